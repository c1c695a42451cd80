#include "workflow/template.hpp"

#include <catch2/catch.hpp>

using namespace saga;
using nlohmann::json;

namespace {

struct Fixture {
  json input = {{"order_id", "o-42"}, {"qty", 3}, {"tags", {"a", "b"}}, {"vip", true}};
  json steps = {
      {"reserve", {{"output", {{"id", "r-1"}, {"count", 2}, {"items", {{{"sku", "x"}}}}}}}},
      {"my.step", {{"output", {{"ok", true}}}}},
  };
  TemplateScope scope() const {
    TemplateScope s;
    s.input = &input;
    s.steps = &steps;
    s.instance_id = "inst-1";
    s.workflow = "checkout";
    s.secret = [](const std::string& name) -> std::optional<std::string> {
      if (name == "api_token") return "t0ps3cret";
      return std::nullopt;
    };
    return s;
  }
};

json render(const json& value) {
  Fixture f;
  auto r = render_templates(value, f.scope());
  REQUIRE(r);
  CHECK_FALSE(r->used_secret);
  return r->value;
}

std::string render_error(const json& value) {
  Fixture f;
  auto r = render_templates(value, f.scope());
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::invalid_argument);
  return r.error().message;
}

}  // namespace

TEST_CASE("a string that is exactly one template keeps the JSON type", "[template]") {
  CHECK(render("${{ input.qty }}") == json(3));
  CHECK(render("${{input.vip}}") == json(true));
  CHECK(render("${{   input.tags }}") == json({"a", "b"}));
  CHECK(render("${{ steps.reserve.output }}") ==
        json({{"id", "r-1"}, {"count", 2}, {"items", {{{"sku", "x"}}}}}));
  CHECK(render("${{ steps.reserve.output.count }}") == json(2));
  CHECK(render("${{ steps.reserve.output.items.0.sku }}") == json("x"));
  CHECK(render("${{ instance.id }}") == json("inst-1"));
  CHECK(render("${{ workflow.name }}") == json("checkout"));
  CHECK(render("${{ input }}") == Fixture{}.input);
}

TEST_CASE("templates inside text are stringified", "[template]") {
  CHECK(render("order ${{ input.order_id }}") == json("order o-42"));
  CHECK(render("${{ input.qty }}x") == json("3x"));
  CHECK(render("${{ input.qty }}${{ input.vip }}") == json("3true"));
  CHECK(render("tags=${{ input.tags }} id=${{ steps.reserve.output.id }}") ==
        json(R"(tags=["a","b"] id=r-1)"));
  CHECK(render("ok: ${{ steps.my.step.output.ok }}") == json("ok: true"));
  CHECK(render("no templates } here {{") == json("no templates } here {{"));
  CHECK(render("") == json(""));
}

TEST_CASE("rendering walks objects and arrays but leaves keys and non-strings", "[template]") {
  const json in = {
      {"argv", {"/bin/reserve", "${{ input.order_id }}", 7}},
      {"nested", {{"${{ input.qty }}", "${{ input.qty }}"}, {"flag", false}, {"nothing", nullptr}}},
  };
  const json want = {
      {"argv", {"/bin/reserve", "o-42", 7}},
      {"nested", {{"${{ input.qty }}", 3}, {"flag", false}, {"nothing", nullptr}}},
  };
  CHECK(render(in) == want);
}

TEST_CASE("a missing path is an error naming the expression and where it stops", "[template]") {
  CHECK(render_error("${{ steps.reserve.output.x }}") ==
        R"(template ${{ steps.reserve.output.x }}: steps.reserve.output has no key "x")");
  CHECK(render_error({{"a", {"ok", "see ${{ input.missing.deep }}"}}}) ==
        R"(template ${{ input.missing.deep }}: input has no key "missing")");
  CHECK(
      render_error("${{ steps.charge.output.id }}") ==
      R"(template ${{ steps.charge.output.id }}: step "charge" has not succeeded, so it has no output)");
  CHECK(render_error("${{ steps.reserve.output.items.3 }}") ==
        "template ${{ steps.reserve.output.items.3 }}: steps.reserve.output.items has no index 3 "
        "(it has 1 elements)");
  CHECK(render_error("${{ input.qty.x }}") ==
        R"(template ${{ input.qty.x }}: input.qty is a number, so it has no "x")");
  CHECK(render_error("${{ input.tags.first }}") ==
        R"(template ${{ input.tags.first }}: input.tags is an array, so it has no "first")");
  CHECK(render_error("${{ input.tags.99999999999999999999999 }}").find("has no index") !=
        std::string::npos);
  CHECK(render_error("${{ secrets.nope }}") ==
        R"(template ${{ secrets.nope }}: no secret named "nope")");
  CHECK(render_error("${{ env.HOME }}").starts_with("template ${{ env.HOME }}: not a name"));
  CHECK(render_error("${{ instance.name }}").starts_with("template ${{ instance.name }}: "));
}

TEST_CASE("malformed templates are errors", "[template]") {
  CHECK(render_error("${{ input.x") == R"(template "${{ input.x" is not closed with }})");
  CHECK(render_error("${{ }}") ==
        R"(template "${{ }}" is empty; write a path such as ${{ input.order_id }})");
  CHECK(render_error("${{ input.x + 1 }}")
            .starts_with(R"(template "${{ input.x + 1 }}" is not a dotted path)"));
  CHECK(render_error("${{ input..x }}") ==
        R"(template "${{ input..x }}" has an empty path element (check the dots))");
  CHECK(render_error("${{ .input }}").find("empty path element") != std::string::npos);
  CHECK(render_error("${{ input. }}").find("empty path element") != std::string::npos);
}

TEST_CASE("a secret marks the rendered value", "[template]") {
  Fixture f;
  auto r = render_templates({{"headers", {{"Authorization", "Bearer ${{ secrets.api_token }}"}}}},
                            f.scope());
  REQUIRE(r);
  CHECK(r->used_secret);
  CHECK(r->value["headers"]["Authorization"] == "Bearer t0ps3cret");

  TemplateScope no_secrets = f.scope();
  no_secrets.secret = nullptr;
  auto missing = render_templates("${{ secrets.api_token }}", no_secrets);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message ==
        R"(template ${{ secrets.api_token }}: no secret named "api_token")");
}

TEST_CASE("a scope without input or steps renders nothing from them", "[template]") {
  TemplateScope empty;
  auto r = render_templates("${{ input.x }}", empty);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == R"(template ${{ input.x }}: input has no key "x")");
  auto ok = render_templates({{"a", 1}, {"b", "plain"}}, empty);
  REQUIRE(ok);
  CHECK(ok->value == json({{"a", 1}, {"b", "plain"}}));
}

TEST_CASE("find_templates lists every template with its path", "[template]") {
  auto refs =
      find_templates({{"a", "${{ input.x }} and ${{steps.reserve.output.id}}"},
                      {"b", {1, "${{ steps.my.step.output.ok }}", {{"c", "${{ secrets.k }}"}}}},
                      {"plain", "plain"}});
  REQUIRE(refs);
  REQUIRE(refs->size() == 4);
  CHECK((*refs)[0].expression == "input.x");
  CHECK((*refs)[0].path == std::vector<std::string>{"input", "x"});
  CHECK((*refs)[1].path == std::vector<std::string>{"steps", "reserve", "output", "id"});
  // Step names may hold dots: the name runs up to `.output`.
  CHECK((*refs)[2].expression == "steps.my.step.output.ok");
  CHECK((*refs)[2].path == std::vector<std::string>{"steps", "my.step", "output", "ok"});
  CHECK((*refs)[3].path == std::vector<std::string>{"secrets", "k"});

  // A key is not rendered, so a template written in one is an error, not ignored.
  auto in_key = find_templates({{"a", {{"${{ input.k }}", 1}}}});
  REQUIRE_FALSE(in_key);
  CHECK(in_key.error().message ==
        "the key \"${{ input.k }}\" holds a template, and keys are not rendered; use a fixed key "
        "and put the template in its value");

  auto bad = find_templates({"${{ ok.x }}", "${{ bad", "${{ a b }}"});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message ==
        "template \"${{ bad\" is not closed with }}\ntemplate \"${{ a b }}\" is not a dotted path: "
        "templates are path lookups only, such as ${{ steps.NAME.output.field }}, made of "
        "letters, digits, '_' and '-' separated by '.'");
}

TEST_CASE("schedule.fire_time renders for scheduled instances only", "[template]") {
  Fixture f;
  TemplateScope scope = f.scope();
  scope.schedule_fire_time = "2026-11-23T03:00:00Z";
  auto r = render_templates("at ${{ schedule.fire_time }}", scope);
  REQUIRE(r);
  CHECK(r->value == json("at 2026-11-23T03:00:00Z"));
  CHECK(render_error("${{ schedule.fire_time }}") ==
        "template ${{ schedule.fire_time }}: this instance was not started by a schedule, so it "
        "has no fire time");
}
