#include "executor/executor.hpp"

#include <uv.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <thread>

#include "test_loop.hpp"

using namespace saga;
using saga::test::Loop;
using namespace std::chrono_literals;

namespace {

// Polls `cond` for up to five seconds, turning the loop in between.
bool eventually(Loop& loop, const std::function<bool()>& cond) {
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(1ms)) {
    loop.turn();
    if (cond()) return true;
  }
  return cond();
}

// A job that holds its worker until released, and says when it ends on the loop thread.
struct StuckJob {
  std::atomic<bool> started{false};
  std::atomic<bool> release{false};
  int delivered = 0;
  Executor::Job job() {
    return [this] {
      started = true;
      while (!release) std::this_thread::sleep_for(1ms);
      return std::function<void()>([this] { ++delivered; });
    };
  }
};

}  // namespace

TEST_CASE("a job given up on gets its worker replaced, and the pool returns to its size") {
  Loop loop;
  Executor ex(*loop.queue, 1);
  StuckJob stuck;
  const Executor::Ticket a = ex.submit(stuck.job());
  REQUIRE(eventually(loop, [&] { return stuck.started.load(); }));

  std::atomic<int> ran{0};
  int delivered = 0;
  auto counted = [&] {
    return [&] {
      ++ran;
      return std::function<void()>([&] { ++delivered; });
    };
  };
  ex.submit(counted());
  // The only worker is held: the second job waits.
  std::this_thread::sleep_for(50ms);
  CHECK(ran == 0);

  CHECK(ex.abandon(a) == Executor::Abandoned::replaced);
  CHECK(ex.abandon(a) == Executor::Abandoned::done);  // once
  CHECK(ex.abandoned() == 1);
  REQUIRE(eventually(loop, [&] { return delivered == 1; }));
  CHECK(ex.busy() == 1);  // the abandoned job still runs

  // What the abandoned job returns still reaches the loop; its worker then leaves.
  stuck.release = true;
  REQUIRE(eventually(loop, [&] { return stuck.delivered == 1 && ex.abandoned() == 0; }));
  CHECK(ex.busy() == 0);
  CHECK(ex.abandon(a) == Executor::Abandoned::done);

  // One worker is left, and it takes jobs.
  StuckJob next;
  ex.submit(next.job());
  REQUIRE(eventually(loop, [&] { return next.started.load(); }));
  ex.submit(counted());
  std::this_thread::sleep_for(50ms);
  CHECK(ran == 1);
  next.release = true;
  REQUIRE(eventually(loop, [&] { return delivered == 2 && next.delivered == 1; }));
}

TEST_CASE("a queued job given up on never runs") {
  Loop loop;
  Executor ex(*loop.queue, 1);
  StuckJob stuck;
  ex.submit(stuck.job());
  REQUIRE(eventually(loop, [&] { return stuck.started.load(); }));
  std::atomic<bool> ran{false};
  const Executor::Ticket b = ex.submit([&] {
    ran = true;
    return std::function<void()>();
  });
  CHECK(ex.busy() == 2);
  CHECK_FALSE(ex.drop_queued(b + 1));  // no such job
  CHECK(ex.abandon(b) == Executor::Abandoned::dropped);
  CHECK_FALSE(ex.drop_queued(b));  // once
  CHECK(ex.busy() == 1);
  CHECK(ex.abandoned() == 0);  // nothing to replace
  stuck.release = true;
  REQUIRE(eventually(loop, [&] { return stuck.delivered == 1; }));
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(ran);
}
