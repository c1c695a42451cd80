// The control protocol (DESIGN §7): JSON-RPC 2.0, one JSON object per line, both ways.
// Shared by the daemon's control server and sagactl.
#pragma once

#include <algorithm>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/error.hpp"

namespace saga::rpc {

using json = nlohmann::json;

inline constexpr size_t kMaxRequestBytes = 1 << 20;

// An instance id is 1 to kMaxIdBytes bytes without control characters: NUL cannot be journaled,
// and the others would break log lines and tables.
inline constexpr size_t kMaxIdBytes = 128;
inline bool has_control_character(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

// JSON-RPC 2.0 error codes, and ours in the implementation-defined range.
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;
inline constexpr int kNotFound = -32001;
inline constexpr int kFailedPrecondition = -32002;
inline constexpr int kUnavailable = -32003;
inline constexpr int kAlreadyExists = -32004;

int error_code_for(ErrorCode code);
ErrorCode error_code_from(int rpc_code);

// Splits a byte stream into lines. A line longer than `max_line` is an overflow: the caller
// answers -32600 and closes the connection.
class LineBuffer {
 public:
  explicit LineBuffer(size_t max_line = kMaxRequestBytes) : max_line_(max_line) {}

  // Appends `data` and moves every complete line (without its '\n', '\r' stripped) into
  // `lines`. Returns false once the unfinished line exceeds max_line.
  bool feed(std::string_view data, std::vector<std::string>& lines);

 private:
  size_t max_line_;
  std::string pending_;
};

json make_request(const json& id, std::string_view method, json params);
json make_notification(std::string_view method, json params);
json make_result(const json& id, json result);
json make_error(const json& id, int code, std::string_view message);

// A request as the server sees it after checking its shape.
struct Request {
  json id;  // as sent (a string, a number or null); see is_notification for none
  std::string method;
  json params;  // object (empty when absent)
};

// Whether a request's id says it was a notification (it had no "id"): one that is carried out
// and never answered, as JSON-RPC 2.0 says.
inline bool is_notification(const json& id) {
  return id.is_discarded();
}

// Checks the JSON-RPC shape of a parsed message; an error is (code, message) to send back. A
// request takes its params out of `message`; after an error `message` is as it was.
std::optional<Request> parse_request(json& message, int& error_code, std::string& error);

}  // namespace saga::rpc
