// Writes JSON text straight into a string, for the records the loop thread writes on every
// transition: building an nlohmann tree first costs several allocations per field. Values that
// are already trees (step outputs, inputs) are dumped by nlohmann; strings are escaped by it too
// unless they are plain printable ASCII, the common case for names and ids. Keys, and the times
// and state names this program makes, are written as they are.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "engine/time.hpp"

namespace saga {

// The bytes that stand for themselves inside a JSON string, as this program writes and reads
// them: printable ASCII but the quote and the backslash. Anything else (control characters,
// which must be escaped; non-ASCII, whose UTF-8 nlohmann checks) goes through nlohmann.
inline constexpr auto kJsonPlainByte = [] {
  std::array<bool, 256> plain{};
  for (size_t c = 0x20; c < 0x7f; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

// A member name, made into its text (`,"name":`) when the program is compiled: names are string
// literals of plain printable ASCII, and one that is not does not compile.
class JsonKey {
 public:
  consteval JsonKey(const char* name) {  // NOLINT(google-explicit-constructor): w.key("id")
    text_[size_++] = ',';
    text_[size_++] = '"';
    for (; *name != '\0'; ++name) {
      if (!kJsonPlainByte[static_cast<unsigned char>(*name)] || size_ + 2 >= sizeof text_) {
        throw "a JSON key must be a short literal of plain printable ASCII";
      }
      text_[size_++] = *name;
    }
    text_[size_++] = '"';
    text_[size_++] = ':';
  }
  // With the comma that separates it from the member before, or without.
  std::string_view text(bool comma) const {
    return comma ? std::string_view(text_, size_) : std::string_view(text_ + 1, size_ - 1);
  }

 private:
  char text_[40]{};
  size_t size_ = 0;
};

class JsonText {
 public:
  explicit JsonText(std::string& out) : out_(out) {}

  JsonText& begin_object() {
    separate();
    out_.push_back('{');
    first_ = true;
    return *this;
  }
  JsonText& end_object() {
    out_.push_back('}');
    first_ = false;
    return *this;
  }
  JsonText& begin_array() {
    separate();
    out_.push_back('[');
    first_ = true;
    return *this;
  }
  JsonText& end_array() {
    out_.push_back(']');
    first_ = false;
    return *this;
  }
  // The next value is the member `name` of the object being written.
  JsonText& key(JsonKey name) {
    out_.append(name.text(!after_key_ && !first_));
    first_ = false;
    after_key_ = true;
    return *this;
  }
  // The next value is the member `name`, a name known only at run time (a step's, say).
  JsonText& member(std::string_view name) {
    string(name);
    out_.push_back(':');
    after_key_ = true;
    return *this;
  }
  JsonText& string(std::string_view s) {
    separate();
    if (std::all_of(s.begin(), s.end(),
                    [](char c) { return kJsonPlainByte[static_cast<unsigned char>(c)]; })) {
      append_quoted(s);
    } else {
      out_.append(nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    return *this;
  }
  // A string that needs no escaping because this program made it, such as the name of a state.
  JsonText& plain(std::string_view s) {
    separate();
    append_quoted(s);
    return *this;
  }
  JsonText& time(TimePoint t) {
    separate();
    char text[kRfc3339Size + 2];
    if (!format_rfc3339_to(t, text + 1)) {
      append_quoted(format_rfc3339(t));
      return *this;
    }
    text[0] = '"';
    text[kRfc3339Size + 1] = '"';
    out_.append(text, sizeof text);
    return *this;
  }
  JsonText& number(uint64_t n) {
    separate();
    char digits[20];
    auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
    out_.append(digits, static_cast<size_t>(end - digits));
    return *this;
  }
  JsonText& null() {
    separate();
    out_.append("null", 4);
    return *this;
  }
  JsonText& value(const nlohmann::json& j) {
    separate();
    // Most inputs and outputs are empty.
    if (j.is_object() && j.empty()) {
      out_.append("{}", 2);
    } else if (j.is_null()) {
      out_.append("null", 4);
    } else {
      out_.append(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    return *this;
  }

 private:
  // A std::string call costs more than the few bytes it appends: single characters go in with
  // push_back, which is inlined, and each piece of text with one append.
  void separate() {
    if (!after_key_ && !first_) out_.push_back(',');
    after_key_ = false;
    first_ = false;
  }
  void append_quoted(std::string_view s) {
    out_.push_back('"');
    out_.append(s);
    out_.push_back('"');
  }

  std::string& out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace saga
