#include "scheduler/cron.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <vector>

namespace saga {
namespace {

using namespace std::chrono;

struct FieldSpec {
  std::string_view name;
  int min;
  int max;
  const std::array<std::string_view, 13>* names;  // index = value; empty where no name
};

constexpr std::array<std::string_view, 13> kMonthNames = {
    "", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 13> kDayNames = {
    "sun", "mon", "tue", "wed", "thu", "fri", "sat", "", "", "", "", "", ""};

constexpr FieldSpec kSecond{"second", 0, 59, nullptr};
constexpr FieldSpec kMinute{"minute", 0, 59, nullptr};
constexpr FieldSpec kHour{"hour", 0, 23, nullptr};
constexpr FieldSpec kDom{"day-of-month", 1, 31, nullptr};
constexpr FieldSpec kMonth{"month", 1, 12, &kMonthNames};
// 7 is Sunday too, as in every cron.
constexpr FieldSpec kDow{"day-of-week", 0, 7, &kDayNames};

struct Token {
  std::string_view text;
  size_t offset;
};

std::vector<Token> split_fields(std::string_view text) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) out.push_back({text.substr(start, i - start), start});
  }
  return out;
}

std::unexpected<CronError> error(size_t offset, const FieldSpec& f, const std::string& what) {
  return std::unexpected(CronError{offset, "cron field " + std::string(f.name) + ": " + what});
}

std::string quoted(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

std::expected<int, CronError> parse_value(Token t, const FieldSpec& f) {
  if (t.text.empty()) return error(t.offset, f, "a number is missing");
  int value = 0;
  if (std::isdigit(static_cast<unsigned char>(t.text[0]))) {
    auto [end, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), value);
    if (ec != std::errc() || end != t.text.data() + t.text.size()) {
      if (t.text.find_first_of("LlWw#") != std::string_view::npos) {
        return error(t.offset, f,
                     quoted(t.text) +
                         " is not supported; use numbers, names, lists, ranges and "
                         "steps");
      }
      return error(t.offset, f, quoted(t.text) + " is not a number");
    }
  } else {
    std::string lower;
    for (char c : t.text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool found = false;
    if (f.names) {
      for (size_t i = 0; i < f.names->size(); ++i) {
        if (!(*f.names)[i].empty() && (*f.names)[i] == lower) {
          value = static_cast<int>(i);
          found = true;
        }
      }
    }
    if (!found) {
      if (lower == "l" || lower == "lw" || lower == "?") {
        return error(t.offset, f,
                     quoted(t.text) +
                         " is not supported; use numbers, names, lists, ranges and "
                         "steps");
      }
      std::string hint = f.names == &kMonthNames ? "; months are 1-12 or JAN-DEC"
                         : f.names == &kDayNames ? "; days of the week are 0-7 or SUN-SAT"
                                                 : "";
      return error(t.offset, f, quoted(t.text) + " is not a number" + hint);
    }
  }
  if (value < f.min || value > f.max) {
    return error(t.offset, f,
                 std::to_string(value) + " is out of range " + std::to_string(f.min) + "-" +
                     std::to_string(f.max));
  }
  return value;
}

// Parses one field into a bit mask over [f.min, f.max].
std::expected<uint64_t, CronError> parse_field(Token field, const FieldSpec& f) {
  uint64_t mask = 0;
  size_t pos = 0;
  const std::string_view text = field.text;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    Token item{text.substr(pos, comma - pos), field.offset + pos};
    if (item.text.empty()) return error(item.offset, f, "an empty item in a list");
    Token base = item;
    int step = 1;
    if (size_t slash = item.text.find('/'); slash != std::string_view::npos) {
      base.text = item.text.substr(0, slash);
      Token st{item.text.substr(slash + 1), item.offset + slash + 1};
      auto [end, ec] = std::from_chars(st.text.data(), st.text.data() + st.text.size(), step);
      if (st.text.empty() || ec != std::errc() || end != st.text.data() + st.text.size() ||
          step < 1) {
        return error(st.offset, f,
                     "the step " + quoted(st.text) + " after '/' must be a whole number from 1");
      }
    }
    int lo = 0, hi = 0;
    if (base.text == "*") {
      lo = f.min;
      hi = f.max == 7 ? 6 : f.max;
    } else if (size_t dash = base.text.find('-'); dash != std::string_view::npos) {
      auto a = parse_value({base.text.substr(0, dash), base.offset}, f);
      if (!a) return std::unexpected(a.error());
      const std::string_view upper = base.text.substr(dash + 1);
      auto b = parse_value({upper, base.offset + dash + 1}, f);
      if (!b) return std::unexpected(b.error());
      // SUN as the end of a range that would run backwards is the Sunday that ends the week:
      // FRI-SUN is 5-7 (SUN-SUN stays Sunday).
      if (&f == &kDow && *b == 0 && *a > 0 && !upper.empty() &&
          !std::isdigit(static_cast<unsigned char>(upper[0]))) {
        b = 7;
      }
      if (*a > *b) {
        // A range does not wrap around: FRI-SUN is FRI,SAT,SUN or 5-7.
        return error(base.offset, f,
                     "the range " + quoted(base.text) +
                         " runs backwards and ranges do not wrap around; write it as two ranges "
                         "(22-23,0-2) or list the values");
      }
      lo = *a;
      hi = *b;
    } else {
      auto a = parse_value(base, f);
      if (!a) return std::unexpected(a.error());
      lo = *a;
      // `a/n` is `a-max/n`.
      hi = item.text.find('/') != std::string_view::npos ? (f.max == 7 ? 6 : f.max) : *a;
    }
    for (int64_t v = lo; v <= hi; v += step) {
      mask |= uint64_t{1} << (f.max == 7 && v == 7 ? 0 : v);
    }
    pos = comma + 1;
  }
  return mask;
}

struct Macro {
  std::string_view name;
  std::string_view expansion;
};
constexpr std::array<Macro, 7> kMacros = {{{"@yearly", "0 0 1 1 *"},
                                           {"@annually", "0 0 1 1 *"},
                                           {"@monthly", "0 0 1 * *"},
                                           {"@weekly", "0 0 * * 0"},
                                           {"@daily", "0 0 * * *"},
                                           {"@midnight", "0 0 * * *"},
                                           {"@hourly", "0 * * * *"}}};

}  // namespace

std::expected<CronExpr, CronError> CronExpr::parse(std::string_view text) {
  std::vector<Token> fields = split_fields(text);
  if (fields.size() == 1 && fields[0].text.starts_with('@')) {
    for (const Macro& m : kMacros) {
      if (m.name == fields[0].text) {
        auto expanded = parse(m.expansion);
        if (expanded) expanded->text_ = std::string(text);
        return expanded;
      }
    }
    return std::unexpected(
        CronError{fields[0].offset, "unknown cron macro " + quoted(fields[0].text) +
                                        "; use @hourly, @daily, @weekly, @monthly or @yearly"});
  }
  if (fields.size() != 5 && fields.size() != 6) {
    return std::unexpected(
        CronError{0,
                  "a cron expression has 5 fields (minute hour day-of-month month day-of-week), 6 "
                  "with leading seconds, or is a macro such as @daily; this one has " +
                      std::to_string(fields.size())});
  }
  CronExpr c;
  c.text_ = std::string(text);
  size_t i = 0;
  if (fields.size() == 6) {
    auto s = parse_field(fields[i++], kSecond);
    if (!s) return std::unexpected(s.error());
    c.seconds_ = *s;
  } else {
    c.seconds_ = 1;
  }
  const std::array<const FieldSpec*, 5> specs = {&kMinute, &kHour, &kDom, &kMonth, &kDow};
  std::array<uint64_t, 5> masks{};
  for (size_t k = 0; k < specs.size(); ++k, ++i) {
    auto m = parse_field(fields[i], *specs[k]);
    if (!m) return std::unexpected(m.error());
    masks[k] = *m;
  }
  c.minutes_ = masks[0];
  c.hours_ = static_cast<uint32_t>(masks[1]);
  c.days_ = static_cast<uint32_t>(masks[2]);
  c.months_ = static_cast<uint16_t>(masks[3]);
  c.weekdays_ = static_cast<uint8_t>(masks[4]);
  const size_t first5 = fields.size() - 5;
  c.runs_through_ =
      fields[first5].text.starts_with('*') || fields[first5 + 1].text.starts_with('*');
  c.dom_star_ = fields[first5 + 2].text.starts_with('*');
  c.dow_star_ = fields[first5 + 4].text.starts_with('*');
  return c;
}

bool CronExpr::day_matches(const date::year_month_day& ymd) const {
  const bool dom = days_ >> static_cast<unsigned>(ymd.day()) & 1;
  const bool dow = weekdays_ >> date::weekday(ymd).c_encoding() & 1;
  return dom_star_ || dow_star_ ? dom && dow : dom || dow;
}

bool CronExpr::matches(date::local_seconds t) const {
  const auto day = floor<days>(t);
  const date::year_month_day ymd(day);
  const date::hh_mm_ss<seconds> tod(t - day);
  return (months_ >> static_cast<unsigned>(ymd.month()) & 1) && day_matches(ymd) &&
         (hours_ >> tod.hours().count() & 1) && (minutes_ >> tod.minutes().count() & 1) &&
         (seconds_ >> tod.seconds().count() & 1);
}

std::optional<date::local_seconds> CronExpr::next_match(date::local_seconds from,
                                                        date::local_seconds limit) const {
  date::local_seconds t = from;
  while (t <= limit) {
    const auto day = floor<days>(t);
    const date::year_month_day ymd(day);
    if (!(months_ >> static_cast<unsigned>(ymd.month()) & 1)) {
      const date::year_month next = date::year_month(ymd.year(), ymd.month()) + date::months(1);
      t = date::local_days(next / 1);
      continue;
    }
    if (!day_matches(ymd)) {
      t = day + days(1);
      continue;
    }
    const date::hh_mm_ss<seconds> tod(t - day);
    const auto h = tod.hours().count(), m = tod.minutes().count(), s = tod.seconds().count();
    if (!(hours_ >> h & 1)) {
      t = day + hours(h + 1);
      continue;
    }
    if (!(minutes_ >> m & 1)) {
      t = day + hours(h) + minutes(m + 1);
      continue;
    }
    if (!(seconds_ >> s & 1)) {
      t = day + hours(h) + minutes(m) + seconds(s + 1);
      continue;
    }
    return t;
  }
  return std::nullopt;
}

}  // namespace saga
