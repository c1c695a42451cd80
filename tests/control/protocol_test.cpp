#include "control/protocol.hpp"

#include <catch2/catch.hpp>
#include <saga/json_depth.hpp>
#include <string>

using namespace saga;
using namespace saga::rpc;

TEST_CASE("lines are split across reads, with \\r\\n tolerated") {
  LineBuffer buf(64);
  std::vector<std::string> lines;
  CHECK(buf.feed("{\"a\":", lines));
  CHECK(lines.empty());
  CHECK(buf.feed("1}\r\n{\"b\":2}\n{\"c\"", lines));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "{\"a\":1}");
  CHECK(lines[1] == "{\"b\":2}");
  CHECK(buf.feed(":3}\n", lines));
  CHECK(lines.back() == "{\"c\":3}");
}

TEST_CASE("a line longer than the limit overflows, complete or not") {
  LineBuffer unfinished(16);
  std::vector<std::string> lines;
  CHECK_FALSE(unfinished.feed(std::string(17, 'x'), lines));
  LineBuffer complete(16);
  CHECK_FALSE(complete.feed(std::string(17, 'x') + "\n", lines));
  CHECK(lines.empty());
  LineBuffer exact(16);
  CHECK(exact.feed(std::string(16, 'x') + "\n", lines));
  CHECK(lines.size() == 1);
}

TEST_CASE("requests are checked for the JSON-RPC 2.0 shape") {
  int code = 0;
  std::string error;
  json ping = json::parse(R"({"jsonrpc":"2.0","id":7,"method":"ping"})");
  auto ok = parse_request(ping, code, error);
  REQUIRE(ok);
  CHECK(ok->id == 7);
  CHECK(ok->method == "ping");
  CHECK(ok->params == json::object());
  json start = json::parse(R"({"jsonrpc":"2.0","id":"a","method":"start","params":{"x":[1]}})");
  ok = parse_request(start, code, error);
  REQUIRE(ok);
  CHECK(ok->params == json::parse(R"({"x":[1]})"));
  CHECK_FALSE(is_notification(ok->id));
  // Without "id", a notification; "id": null is a request all the same.
  json note = json::parse(R"({"jsonrpc":"2.0","method":"ping"})");
  ok = parse_request(note, code, error);
  REQUIRE(ok);
  CHECK(is_notification(ok->id));
  json null_id = json::parse(R"({"jsonrpc":"2.0","id":null,"method":"ping"})");
  ok = parse_request(null_id, code, error);
  REQUIRE(ok);
  CHECK_FALSE(is_notification(ok->id));
  CHECK(ok->id.is_null());

  struct Bad {
    const char* text;
    int code;
  };
  for (auto [text, expected] :
       {Bad{R"([1,2])", kInvalidRequest}, Bad{R"({"id":1,"method":"ping"})", kInvalidRequest},
        Bad{R"({"jsonrpc":"2.0","id":1})", kInvalidRequest},
        Bad{R"({"jsonrpc":"2.0","id":{},"method":"x"})", kInvalidRequest},
        Bad{R"({"jsonrpc":"2.0","id":1,"method":"x","params":[1]})", kInvalidParams}}) {
    INFO(text);
    json message = json::parse(text);
    json before = message;
    CHECK_FALSE(parse_request(message, code, error));
    CHECK(message == before);
    CHECK(code == expected);
    CHECK_FALSE(error.empty());
  }
}

TEST_CASE("responses and errors carry the id and the version") {
  CHECK(make_result(3, {{"x", 1}}) == json::parse(R"({"jsonrpc":"2.0","id":3,"result":{"x":1}})"));
  json e = make_error("a", kNotFound, "no instance x");
  CHECK(e["error"]["code"] == kNotFound);
  CHECK(e["id"] == "a");
  CHECK(error_code_from(error_code_for(ErrorCode::failed_precondition)) ==
        ErrorCode::failed_precondition);
  CHECK(make_notification("event", json::object()).contains("id") == false);
}

TEST_CASE("json_nests_deeper_than counts arrays and objects, not brackets in strings",
          "[protocol]") {
  auto nested = [](size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); };
  CHECK(!saga::json_nests_deeper_than("1"));
  CHECK(!saga::json_nests_deeper_than(R"({"a": [1, {"b": []}]})", 4));
  CHECK(saga::json_nests_deeper_than(R"({"a": [1, {"b": []}]})", 3));
  CHECK(!saga::json_nests_deeper_than(nested(saga::kMaxJsonDepth)));
  CHECK(saga::json_nests_deeper_than(nested(saga::kMaxJsonDepth + 1)));
  CHECK(saga::json_nests_deeper_than(nested(100'000)));
  // Siblings do not add up.
  CHECK(!saga::json_nests_deeper_than("[[1], [2], [[3]]]", 3));
  // Brackets inside strings, also after an escaped quote, are text.
  CHECK(!saga::json_nests_deeper_than(R"(["[[[[", "\"[[[[", "\\", {"k": "{{{{"}])", 2));
  CHECK(saga::json_nests_deeper_than(R"(["\\", [[1]]])", 2));
  // Stray closers do not let a later run of openers go deeper unnoticed.
  CHECK(saga::json_nests_deeper_than("]]]][[[", 2));
}
