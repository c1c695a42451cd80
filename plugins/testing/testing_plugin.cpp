// The `testing` plugin: deterministic step types for tests, demos and benchmarks (DESIGN §6.1).
// Every one of them can compensate, so a demo can undo any of them; only testing.fail's
// compensation can be told to fail.
#include <saga/step.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace {

using saga::Context;
using saga::Param;
using saga::ParamType;
using saga::Result;

class Noop : public saga::Step {
 public:
  Result run(Context&) override { return Result::ok(); }
  Result compensate(Context&) override { return Result::ok(); }
};

class Echo : public saga::Step {
 public:
  Result run(Context& ctx) override { return Result::ok(ctx.params()); }
  Result compensate(Context& ctx) override { return Result::ok(ctx.params()); }
};

// Fails as its parameters ask; attempts are counted by the host (and across retries of the
// instance), so the plugin keeps no state.
class Fail : public saga::Step {
 public:
  Result run(Context& ctx) override {
    auto attempt = static_cast<int64_t>(ctx.attempt());
    if (ctx.param<bool>("permanent", false)) {
      return Result::fail(ctx.param<std::string>("message", "testing.fail: failing for good"));
    }
    auto times = ctx.param<int64_t>("times", 0);
    if (attempt <= times) {
      return Result::retry(ctx.param<std::string>(
          "message", "testing.fail: failing attempt " + std::to_string(attempt) + " of the first " +
                         std::to_string(times)));
    }
    return Result::ok({{"attempt", attempt}});
  }

  Result compensate(Context& ctx) override {
    auto attempt = static_cast<int64_t>(ctx.attempt());
    if (ctx.param<bool>("compensate_permanent", false)) {
      return Result::fail("testing.fail: compensation failing for good");
    }
    auto times = ctx.param<int64_t>("compensate_fails", 0);
    if (attempt <= times) {
      return Result::retry("testing.fail: failing compensation attempt " + std::to_string(attempt) +
                           " of the first " + std::to_string(times));
    }
    return Result::ok();
  }
};

// Sleeps, in run and in compensate alike, so a compensation can take time too.
class Sleep : public saga::Step {
 public:
  Result run(Context& ctx) override { return sleep(ctx); }
  Result compensate(Context& ctx) override { return sleep(ctx); }

 private:
  static Result sleep(Context& ctx) {
    using std::chrono::milliseconds;
    using std::chrono::steady_clock;
    auto ms = ctx.param<int64_t>("ms", 0);
    if (ms < 0) {
      return Result::fail("testing.sleep: ms must not be negative, got " + std::to_string(ms));
    }
    auto until = steady_clock::now() + milliseconds(ms);
    // A step type that does not look at cancelled(), as a badly written one would not.
    const bool ignore_cancel = ctx.param<bool>("ignore_cancel", false);
    // Short naps keep the answer to a cancellation within a few milliseconds.
    constexpr auto kPoll = milliseconds(5);
    for (auto now = steady_clock::now(); now < until; now = steady_clock::now()) {
      if (ctx.cancelled() && !ignore_cancel) return Result::retry("cancelled");
      std::this_thread::sleep_for(std::min<steady_clock::duration>(until - now, kPoll));
    }
    if (ctx.cancelled() && !ignore_cancel) return Result::retry("cancelled");
    return Result::ok({{"slept_ms", ms}});
  }
};

template <class T>
saga::StepType compensating(std::string name, std::string description,
                            std::vector<Param> params = {}) {
  return saga::step_type<T>(std::move(name), std::move(description), std::move(params),
                            /*can_compensate=*/true);
}

// noop, echo and fail return at once: sagad may run them on its loop thread.
template <class T>
saga::StepType immediate(std::string name, std::string description,
                         std::vector<Param> params = {}) {
  auto t = compensating<T>(std::move(name), std::move(description), std::move(params));
  t.runs_inline = true;
  return t;
}

saga::StepType echo_type() {
  auto t = immediate<Echo>("testing.echo",
                           "Succeeds with its rendered parameters as output; takes any parameters");
  t.accepts_any_params = true;
  return t;
}

}  // namespace

SAGA_PLUGIN(
    "testing", "1.0",
    {immediate<Noop>("testing.noop", "Succeeds at once with output {}"), echo_type(),
     immediate<Fail>(
         "testing.fail",
         "Fails the first N attempts transiently, then succeeds with output {\"attempt\": "
         "<attempt number>}; or fails for good",
         {Param{"times", ParamType::integer, false, 0,
                "fail this many attempts transiently, then succeed"},
          Param{"permanent", ParamType::boolean, false, false, "fail every attempt for good"},
          Param{"message", ParamType::string, false, nullptr,
                "the error text of a failing attempt"},
          Param{"compensate_fails", ParamType::integer, false, 0,
                "fail this many compensation attempts transiently, then succeed"},
          Param{"compensate_permanent", ParamType::boolean, false, false,
                "fail every compensation attempt for good"}}),
     compensating<Sleep>(
         "testing.sleep", "Sleeps, stopping early with a transient failure when cancelled",
         {Param{"ms", ParamType::integer, true, nullptr, "how long to sleep, in milliseconds"},
          Param{"ignore_cancel", ParamType::boolean, false, false,
                "sleep on when cancelled, as a step type that never checks would"}})});
