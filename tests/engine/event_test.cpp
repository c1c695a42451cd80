#include "engine/event.hpp"

#include <catch2/catch.hpp>
#include <string>

using namespace saga;

namespace {

// What event_from_json(json::parse(text)) reads, or the exception's message.
std::string read_slow(const std::string& text) {
  try {
    Event e = event_from_json(json::parse(text));
    return event_json_text(e) + " output=" + e.output.dump();
  } catch (const json::exception& ex) {
    return std::string("error: ") + ex.what();
  }
}

std::string read_fast(const std::string& text) {
  try {
    Event e = event_from_json_text(text);
    return event_json_text(e) + " output=" + e.output.dump();
  } catch (const json::exception& ex) {
    return std::string("error: ") + ex.what();
  }
}

}  // namespace

TEST_CASE("event_from_json_text reads what the journal writes", "[event]") {
  Event e;
  e.seq = 3;
  e.at = *parse_rfc3339("2026-11-23T10:55:18.321Z");
  e.type = EventType::step_failed;
  e.step = "charge \"card\"\t\\ /";
  e.attempt = 2;
  e.error = "exit status 1: ünïcode, \x01 control, {\"braces\": [1]}";
  e.retry_at = *parse_rfc3339("2026-11-23T11:55:18.321Z");
  Event back = event_from_json_text(event_json_text(e));
  CHECK(event_json_text(back) == event_json_text(e));

  Event started;
  started.seq = 1;
  started.type = EventType::instance_started;
  started.workflow = "wf";
  started.version = "0123456789abcdef";
  started.input = json::parse(R"({"a": [1, -2.5, "}]\"", {"b": null}], "c": true, "d": {}})");
  started.deadline = *parse_rfc3339("2026-11-24T00:00:00Z");
  started.uid = 4000000000u;
  started.gid = 4000000001u;
  back = event_from_json_text(event_json_text(started));
  CHECK(back.gid == 4000000001u);
  CHECK(event_json_text(back) == event_json_text(started));
  CHECK(back.input == started.input);
}

TEST_CASE("event_from_json_text reads every text as event_from_json does", "[event]") {
  const char* texts[] = {
      R"({"seq":1,"at":"2026-11-23T10:55:18.319Z","type":"instance_started","input":{},"workflow":"w","version":"v","uid":0})",
      R"({"seq":2,"at":"2026-11-23T10:55:18.319Z","type":"step_started","step":"wait","attempt":1})",
      R"({"seq":3,"at":"2026-11-23T10:55:18.321Z","type":"step_failed","step":"wait","attempt":1,"error":"e","retry_at":"2026-11-23T10:56:18.321Z"})",
      R"({"seq":4,"at":"2026-11-23T10:55:18.321Z","type":"step_succeeded","step":"s","attempt":1,"output":{"x":[1,2,{"y":"]}"}],"z":"\\\""}})",
      R"({"seq":4,"at":"2026-11-23T10:55:18.321Z","type":"step_succeeded","step":"s","output":"text"})",
      R"({"seq":4,"at":"2026-11-23T10:55:18.321Z","type":"step_succeeded","step":"s","output":12.5e3})",
      R"({"seq":4,"at":"2026-11-23T10:55:18.321Z","type":"step_succeeded","step":"s","output":null})",
      R"({"seq":4,"at":"2026-11-23T10:55:18.321Z","type":"step_succeeded","step":"s","output":[]})",
      R"( { "seq" : 5 , "at" : "2026-11-23T10:55:18+02:00" , "type" : "instance_completed" } )",
      R"({"seq":5,"at":"2026-11-23T10:55:18Z","type":"instance_compensating","cause":"cancelled","reason":"by \u00e9 hand","uid":7,"gid":100})",
      R"({"seq":5,"at":"2026-11-23T10:55:18Z","type":"instance_failed","step":"s","error":"caf\u00e9 ü"})",
      R"({"seq":5,"at":"2026-11-23T10:55:18Z","type":"instance_failed","step":"s","error":"a\nb\/c\bd\fe\rf\tg"})",
      R"({"seq":5,"se\u0071":6,"at":"2026-11-23T10:55:18Z","type":"instance_completed"})",
      R"({"seq":5,"seq":6,"at":"bad","at":"2026-11-23T10:55:18Z","type":"instance_completed"})",
      R"({"seq":5,"at":"2026-11-23T10:55:18Z","type":"instance_completed","extra":[1,2]})",
      R"({"seq":5,"at":"2026-11-23T10:55:18Z","type":"instance_retried","input":{"k":"v"},"step":""})",
      R"({"seq":5.0,"at":"2026-11-23T10:55:18Z","type":"instance_completed"})",
      R"({"seq":-5,"at":"2026-11-23T10:55:18Z","type":"instance_completed"})",
      R"({"seq":05,"at":"2026-11-23T10:55:18Z","type":"instance_completed"})",
      R"({"seq":18446744073709551615,"at":"2026-11-23T10:55:18Z","type":"instance_completed"})",
      R"({"seq":18446744073709551616,"at":"2026-11-23T10:55:18Z","type":"instance_completed"})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"step_started","step":"s","attempt":4294967297})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"step_started","step":"s","attempt":true})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"step_started","step":null})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"step_started","step":5})",
      R"({"seq":"1","at":"2026-11-23T10:55:18Z","type":"instance_completed"})",
      R"({"at":"2026-11-23T10:55:18Z","type":"instance_completed"})",
      R"({"seq":1,"type":"instance_completed"})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z"})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"no_such_event"})",
      R"({"seq":1,"at":"yesterday","type":"instance_completed"})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"instance_completed","deadline":"soon"})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"step_succeeded","output":{"a":}})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"step_succeeded","output":{"a":1})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"step_succeeded","output":tru})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"instance_completed"} x)",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"instance_completed",})",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"instance_completed")",
      R"({"seq":1,"at":"2026-11-23T10:55:18Z","type":"instance_completed"}{})",
      R"([1,2])",
      R"({})",
      "",
      "{\"seq\":1,\"at\":\"2026-11-23T10:55:18Z\",\"type\":\"instance_failed\",\"error\":\"\xff\"}",
      "{\"seq\":1,\"at\":\"2026-11-23T10:55:18Z\",\"type\":\"instance_failed\",\"error\":"
      "\"a\x01\"}",
      "{\"seq\":1,\"at\":\"2026-11-23T10:55:18Z\",\"type\":\"instance_failed\",\"error\":"
      "\"a\x7f\"}",
      "{\"seq\":1,\"at\":\"2026-11-23T10:55:18Z\",\"type\":\"step_succeeded\",\"output\":\"\xc3\"}",
  };
  for (const char* text : texts) {
    INFO(text);
    CHECK(read_fast(text) == read_slow(text));
  }
}
