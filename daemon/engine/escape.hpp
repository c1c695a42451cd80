// Text from a step, a plugin or a client, made safe to print: control characters are written
// as in C (\n, \r, \t, \xNN; C1 controls as \u0080 to \u009f), so that a message stays on one
// line (one journald entry, one table row) and cannot drive the terminal it reaches.
#pragma once

#include <string>
#include <string_view>

namespace saga {

// Appends `text` to `out` (anything with append(const char*, const char*)), escaped.
template <class Out>
void append_escaped(std::string_view text, Out& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t plain = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const bool c1 = c == 0xc2 && i + 1 < text.size() &&
                    static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
                    static_cast<unsigned char>(text[i + 1]) <= 0x9f;
    if ((c >= 0x20 && c != 0x7f) && !c1) continue;
    out.append(text.data() + plain, text.data() + i);
    char escaped[6] = {'\\', 0, 0, 0, 0, 0};
    size_t n = 2;
    if (c1) {
      const auto next = static_cast<unsigned char>(text[++i]);
      escaped[1] = 'u';
      escaped[2] = '0';
      escaped[3] = '0';
      escaped[4] = kHex[next >> 4];
      escaped[5] = kHex[next & 15];
      n = 6;
    } else if (c == '\n' || c == '\r' || c == '\t') {
      escaped[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    } else {
      escaped[1] = 'x';
      escaped[2] = kHex[c >> 4];
      escaped[3] = kHex[c & 15];
      n = 4;
    }
    out.append(escaped, escaped + n);
    plain = i + 1;
  }
  out.append(text.data() + plain, text.data() + text.size());
}

inline std::string escape_control(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_escaped(text, out);
  return out;
}

}  // namespace saga
