// Writes JSON text straight into a string, for the records the loop thread writes on every
// transition: building an nlohmann tree first costs several allocations per field. Values that
// are already trees (step outputs, inputs) are dumped by nlohmann; strings are escaped by it too
// unless they are plain printable ASCII, the common case for names, ids and times.
#pragma once

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
  // The next value is the member `name` of the object being written.
  JsonText& key(std::string_view name) {
    separate();
    append_string(name);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  JsonText& string(std::string_view s) {
    separate();
    append_string(s);
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
    out_ += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
  void append_string(std::string_view s) {
    for (char c : s) {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
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
