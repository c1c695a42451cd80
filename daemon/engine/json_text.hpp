// Writes JSON text straight into a string, for the records the loop thread writes on every
// transition: building an nlohmann tree first costs several allocations per field. Values that
// are already trees (step outputs, inputs) are dumped by nlohmann; strings are escaped by it too
// unless they are plain printable ASCII, the common case for names and ids. Keys, and the times
// and state names this program makes, are written as they are.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace saga {

class JsonText {
 public:
  explicit JsonText(std::string& out) : out_(out) {}

  JsonText& begin_object() {
    separate();
    out_ += '{';
    first_ = true;
    return *this;
  }
  JsonText& end_object() {
    out_ += '}';
    first_ = false;
    return *this;
  }
  JsonText& begin_array() {
    separate();
    out_ += '[';
    first_ = true;
    return *this;
  }
  JsonText& end_array() {
    out_ += ']';
    first_ = false;
    return *this;
  }
  // The next value is the member `name` of the object being written: a literal of plain
  // printable ASCII without quotes or backslashes, written as it is.
  JsonText& key(std::string_view name) {
    separate();
    out_ += '"';
    out_ += name;
    out_ += "\":";
    after_key_ = true;
    return *this;
  }
  JsonText& string(std::string_view s) {
    separate();
    append_string(s);
    return *this;
  }
  // A string that needs no escaping because this program made it: times it formatted, the names
  // of states and event types.
  JsonText& plain(std::string_view s) {
    separate();
    out_ += '"';
    out_ += s;
    out_ += '"';
    return *this;
  }
  JsonText& number(uint64_t n) {
    separate();
    out_ += std::to_string(n);
    return *this;
  }
  JsonText& null() {
    separate();
    out_ += "null";
    return *this;
  }
  JsonText& value(const nlohmann::json& j) {
    separate();
    // Most inputs and outputs are empty.
    if (j.is_object() && j.empty()) {
      out_ += "{}";
    } else if (j.is_null()) {
      out_ += "null";
    } else {
      out_ += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    return *this;
  }

 private:
  void separate() {
    if (after_key_) {
      after_key_ = false;
    } else if (!first_) {
      out_ += ',';
    }
    first_ = false;
  }
  // Bytes that a JSON string cannot hold as they are, and non-ASCII ones, which nlohmann checks
  // for valid UTF-8 (replacing what is not).
  static constexpr auto kNeedsEscape = [] {
    std::array<bool, 256> table{};
    for (size_t c = 0; c < 256; ++c) table[c] = c < 0x20 || c >= 0x7f || c == '"' || c == '\\';
    return table;
  }();

  void append_string(std::string_view s) {
    for (char c : s) {
      if (kNeedsEscape[static_cast<unsigned char>(c)]) {
        out_ += nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        return;
      }
    }
    out_ += '"';
    out_ += s;
    out_ += '"';
  }

  std::string& out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace saga
