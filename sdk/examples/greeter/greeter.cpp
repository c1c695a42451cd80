// greeter.hello: greets someone, and says goodbye when the saga is compensated.
#include <saga/step.hpp>

namespace {

class Hello : public saga::Step {
 public:
  saga::Result run(saga::Context& ctx) override {
    auto name = ctx.param<std::string>("name", "world");
    if (name.empty()) return saga::Result::fail("name must not be empty");
    ctx.log(saga::LogLevel::info, "greeting " + name);
    return saga::Result::ok({{"greeting", "hello, " + name},
                             {"attempt", ctx.attempt()},
                             {"key", std::string(ctx.idempotency_key())}});
  }
  saga::Result compensate(saga::Context& ctx) override {
    return saga::Result::ok({{"farewell", "goodbye, " + ctx.param<std::string>("name", "world")}});
  }
};

}  // namespace

SAGA_PLUGIN("greeter", "1.0",
            {saga::step_type<Hello>("greeter.hello", "Greets someone by name",
                                    {saga::Param{"name", saga::ParamType::string, false, "world",
                                                 "who to greet"}},
                                    /*can_compensate=*/true)});
