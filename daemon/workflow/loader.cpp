#include "workflow/loader.hpp"

#include <iconv.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <string_view>
#include <utility>

#include "scheduler/cron.hpp"
#include "scheduler/fire_times.hpp"
#include "workflow/template.hpp"

namespace saga {
namespace {

constexpr uint32_t kMaxUint32 = std::numeric_limits<uint32_t>::max();
// A schedule starts its missed fires at once: more than this after a downtime is a flood, not a
// catch-up.
constexpr uint32_t kMaxCatchup = 10000;
// Aliases can make a small file expand to a huge tree ("billion laughs"), in values or, from a
// few long strings, in bytes; a definition is never legitimately this big.
constexpr size_t kMaxNodes = 1'000'000;
constexpr size_t kMaxTextBytes = 16 << 20;
// Checking dependencies and templates grows with the square of the steps, on the loop thread: a
// file of 40,000 steps held it for 11 s, while 1,000 take milliseconds.
constexpr size_t kMaxSteps = 1000;

// Where `text` stops being UTF-8: the offset of the first byte that does not belong to a valid
// sequence, if any. iconv decodes it strictly (no overlong forms, no surrogates).
std::optional<size_t> first_invalid_utf8(std::string_view text) {
  iconv_t cd = iconv_open("UTF-32LE", "UTF-8");
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::nullopt;
  char* in = const_cast<char*>(text.data());  // iconv's signature; it only reads
  size_t in_left = text.size();
  std::optional<size_t> bad;
  while (in_left > 0) {
    char buf[4096];
    char* out = buf;
    size_t out_left = sizeof buf;
    if (iconv(cd, &in, &in_left, &out, &out_left) == static_cast<size_t>(-1) && errno != E2BIG) {
      bad = static_cast<size_t>(in - text.data());
      break;
    }
  }
  iconv_close(cd);
  return bad;
}

// A file in UTF-16 or UTF-32, which YAML allows and yaml-cpp reads: it starts with a byte order
// mark or has a zero byte among its first four.
bool wide_encoding(std::string_view text) {
  const std::string_view head = text.substr(0, 4);
  return head.starts_with("\xFE\xFF") || head.starts_with("\xFF\xFE") ||
         head.find('\0') != std::string_view::npos;
}

// Collects `FILE:LINE:COLUMN: sentence` messages; reported sorted by position so that a user
// reads them top to bottom.
class Diagnostics {
 public:
  Diagnostics(const std::string& file, bool journaled) : file_(file), journaled_(journaled) {}

  // Every reader gets this: a version from the journal skips the limits on new files.
  bool journaled() const { return journaled_; }

  void add(const YAML::Mark& mark, std::string sentence) {
    // yaml-cpp marks are 0-based, and -1 where there is no position (an empty document).
    const int line = mark.line < 0 ? 1 : mark.line + 1;
    const int column = mark.column < 0 ? 1 : mark.column + 1;
    entries_.push_back({line, column,
                        file_ + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " +
                            std::move(sentence)});
  }

  bool empty() const { return entries_.empty(); }

  std::string joined() {
    std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
      return a.line != b.line ? a.line < b.line : a.column < b.column;
    });
    std::string out;
    for (const Entry& e : entries_) {
      if (!out.empty()) out += '\n';
      out += e.text;
    }
    return out;
  }

 private:
  struct Entry {
    int line;
    int column;
    std::string text;
  };
  const std::string& file_;
  const bool journaled_;
  std::vector<Entry> entries_;
};

std::string in_quotes(std::string_view s) {
  constexpr size_t kMax = 60;
  std::string out = "\"";
  if (s.size() > kMax) {
    out += s.substr(0, kMax);
    out += "...";
  } else {
    out += s;
  }
  out += '"';
  return out;
}

std::string join(const std::vector<std::string_view>& items, std::string_view sep) {
  std::string out;
  for (std::string_view s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

bool is_valid_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return false;
  }
  return true;
}

// In `steps.NAME.output.path`, NAME ends before the first "output" part after its first, so a
// step named "x.output" could not be named in a template.
bool has_output_part(std::string_view name) {
  for (size_t dot = name.find('.'); dot != std::string_view::npos;) {
    size_t next = name.find('.', dot + 1);
    if (name.substr(dot + 1, next - (dot + 1)) == "output") return true;
    dot = next;
  }
  return false;
}

constexpr std::string_view kNameRule =
    "use 1 to 64 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit";

bool all_of(std::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}
bool is_dec(char c) {
  return c >= '0' && c <= '9';
}
bool is_oct(char c) {
  return c >= '0' && c <= '7';
}
bool is_hex(char c) {
  return is_dec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? from the YAML 1.2 core schema.
bool is_yaml_float(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && is_dec(s[i])) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_dec(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && is_dec(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

json integer_json(std::string_view digits, int base, bool negative) {
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec == std::errc() && end == digits.data() + digits.size()) {
    if (!negative) {
      if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return json(static_cast<int64_t>(magnitude));
      }
      return json(magnitude);
    }
    if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) {
      return json(static_cast<int64_t>(0 - magnitude));
    }
  }
  // Beyond 64 bits YAML still means a number; keep it approximately rather than as text.
  const double d = std::strtod(std::string(digits).c_str(), nullptr);
  return json(negative ? -d : d);
}

// Resolves a plain scalar by the YAML 1.2 core schema: booleans, integers and floats become
// JSON numbers and booleans; everything else stays a string.
json resolve_plain(const std::string& s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  std::string_view v = s;
  bool negative = false;
  std::string_view unsigned_part = v;
  if (!v.empty() && (v[0] == '-' || v[0] == '+')) {
    negative = v[0] == '-';
    unsigned_part = v.substr(1);
  }
  if (all_of(unsigned_part, is_dec)) return integer_json(unsigned_part, 10, negative);
  if (v.starts_with("0o") && all_of(v.substr(2), is_oct))
    return integer_json(v.substr(2), 8, false);
  if (v.starts_with("0x") && all_of(v.substr(2), is_hex)) {
    return integer_json(v.substr(2), 16, false);
  }
  if (is_yaml_float(v)) return json(std::strtod(s.c_str(), nullptr));
  if (unsigned_part == ".inf" || unsigned_part == ".Inf" || unsigned_part == ".INF") {
    return json(negative ? -std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::infinity());
  }
  if (v == ".nan" || v == ".NaN" || v == ".NAN")
    return json(std::numeric_limits<double>::quiet_NaN());
  return json(s);
}

json scalar_json(const YAML::Node& n) {
  if (n.IsNull()) return nullptr;
  const std::string& tag = n.Tag();
  // "!" marks a quoted or block scalar: the author asked for a string.
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return json(n.Scalar());
  if (tag == "?" || tag.starts_with("tag:yaml.org,2002:")) return resolve_plain(n.Scalar());
  return json(n.Scalar());
}

std::string describe(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  if (n.IsMap()) return "a mapping";
  if (n.IsSequence()) return "a list";
  const json j = scalar_json(n);
  if (j.is_string()) return "the string " + in_quotes(j.get_ref<const std::string&>());
  if (j.is_boolean()) return std::string("the boolean ") + (j.get<bool>() ? "true" : "false");
  if (j.is_number_integer()) return "the integer " + n.Scalar();
  return "the number " + n.Scalar();
}

// One `key: value` of a mapping, with both nodes for positions.
struct Field {
  std::string name;
  YAML::Node key;
  YAML::Node value;

  // Where to point for a problem with the value: an empty value has no useful position.
  YAML::Mark mark() const {
    return value.IsDefined() && !value.IsNull() ? value.Mark() : key.Mark();
  }
};

// The known keys of one mapping. Unknown and duplicate keys are reported while reading it.
class Fields {
 public:
  const Field* find(std::string_view name) const {
    for (const Field& f : fields_) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

  // `rejected`: keys that are known but not accepted here, each with the sentence to report.
  static Fields read(
      const YAML::Node& map, const std::vector<std::string_view>& allowed, const std::string& where,
      Diagnostics& diags,
      const std::vector<std::pair<std::string_view, std::string_view>>& rejected = {}) {
    Fields out;
    std::map<std::string, int> first_line;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) {
        diags.add(key.Mark(), "a key " + where + " must be a plain name, not " + describe(key));
        continue;
      }
      const std::string& name = key.Scalar();
      auto [pos, inserted] = first_line.emplace(name, key.Mark().line + 1);
      if (!inserted) {
        diags.add(key.Mark(), "duplicate key " + in_quotes(name) + " " + where +
                                  "; it is already set at line " + std::to_string(pos->second));
        continue;
      }
      if (auto r = std::find_if(rejected.begin(), rejected.end(),
                                [&](const auto& x) { return x.first == name; });
          r != rejected.end()) {
        diags.add(key.Mark(), std::string(r->second));
        continue;
      }
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        diags.add(key.Mark(), "unknown key " + in_quotes(name) + " " + where +
                                  "; allowed keys: " + join(allowed, ", "));
        continue;
      }
      out.fields_.push_back(Field{name, key, it->second});
    }
    return out;
  }

 private:
  std::vector<Field> fields_;
};

// Converts `with:` trees to JSON, reporting keys that JSON cannot hold.
class JsonConverter {
 public:
  explicit JsonConverter(Diagnostics& diags) : diags_(diags) {}

  // True once the budget ran out: walking the same nodes again would take as long.
  bool exhausted() const { return reported_size_; }

  json convert(const YAML::Node& n) {
    if (++nodes_ > kMaxNodes) {
      too_big(n, std::to_string(kMaxNodes) + " values");
      return nullptr;
    }
    if (n.IsScalar() && !add_text(n.Scalar().size())) {
      too_big(n, std::to_string(kMaxTextBytes >> 20) + " MiB of text");
      return nullptr;
    }
    if (n.IsMap()) {
      json out = json::object();
      std::map<std::string, int> first_line;
      for (auto it = n.begin(); it != n.end(); ++it) {
        if (!it->first.IsScalar()) {
          diags_.add(it->first.Mark(),
                     "a key in \"with\" must be a plain string, not " + describe(it->first));
          continue;
        }
        const std::string& key = it->first.Scalar();
        if (!add_text(key.size())) {
          too_big(it->first, std::to_string(kMaxTextBytes >> 20) + " MiB of text");
          return nullptr;
        }
        auto [pos, inserted] = first_line.emplace(key, it->first.Mark().line + 1);
        if (!inserted) {
          diags_.add(it->first.Mark(), "duplicate key " + in_quotes(key) +
                                           "; it is already set at line " +
                                           std::to_string(pos->second));
          continue;
        }
        out[key] = convert(it->second);
      }
      return out;
    }
    if (n.IsSequence()) {
      json out = json::array();
      for (const YAML::Node& item : n) out.push_back(convert(item));
      return out;
    }
    return scalar_json(n);
  }

 private:
  // False once the text (values and keys, as often as aliases repeat them) passes the budget.
  bool add_text(size_t bytes) {
    bytes_ += bytes;
    return bytes_ <= kMaxTextBytes || diags_.journaled();
  }

  void too_big(const YAML::Node& n, const std::string& what) {
    if (reported_size_) return;
    diags_.add(n.Mark(),
               "the document expands to more than " + what + " (through aliases?); simplify it");
    reported_size_ = true;
  }

  Diagnostics& diags_;
  size_t nodes_ = 0;
  size_t bytes_ = 0;
  bool reported_size_ = false;
};

std::optional<std::string> read_string(const Field& f, const std::string& label,
                                       Diagnostics& diags) {
  if (!f.value.IsScalar()) {
    diags.add(f.mark(), label + " must be a string, not " + describe(f.value));
    return std::nullopt;
  }
  return f.value.Scalar();
}

std::optional<Millis> read_duration(const Field& f, const std::string& label, bool positive,
                                    Diagnostics& diags) {
  constexpr std::string_view kRule =
      "a duration is a number and a unit (ms, s, m, h, d), largest unit first, such as 250ms, "
      "10s or 1h30m, and at most 36500d";
  if (!f.value.IsScalar()) {
    diags.add(f.mark(),
              label + " must be a duration, not " + describe(f.value) + "; " + std::string(kRule));
    return std::nullopt;
  }
  auto d = parse_duration(f.value.Scalar(), diags.journaled() ? Millis::max() : kMaxDuration);
  if (!d) {
    diags.add(f.mark(), label + " has a bad duration " + in_quotes(f.value.Scalar()) + "; " +
                            std::string(kRule));
    return std::nullopt;
  }
  if (positive && d->count() == 0) {
    diags.add(f.mark(), label + " must be longer than 0");
    return std::nullopt;
  }
  return d;
}

std::optional<uint32_t> read_count(const Field& f, const std::string& label, Diagnostics& diags,
                                   uint32_t max = kMaxUint32) {
  const std::string rule = label + " must be a whole number from 1 to " + std::to_string(max);
  if (!f.value.IsScalar()) {
    diags.add(f.mark(), rule + ", not " + describe(f.value));
    return std::nullopt;
  }
  const json j = scalar_json(f.value);
  if (!j.is_number_integer()) {
    diags.add(f.mark(), rule + ", not " + describe(f.value));
    return std::nullopt;
  }
  if (j.is_number_unsigned() ? j.get<uint64_t>() > max || j.get<uint64_t>() < 1
                             : j.get<int64_t>() < 1 || j.get<int64_t>() > max) {
    diags.add(f.mark(), rule + ", not " + f.value.Scalar());
    return std::nullopt;
  }
  return static_cast<uint32_t>(j.get<int64_t>());
}

std::optional<double> read_number(const Field& f, const std::string& label, double min,
                                  std::optional<double> max, Diagnostics& diags) {
  std::string rule = label + " must be a number of at least " + json(min).dump();
  if (max) rule = label + " must be a number from " + json(min).dump() + " to " + json(*max).dump();
  const json j = f.value.IsScalar() ? scalar_json(f.value) : json();
  if (!j.is_number()) {
    diags.add(f.mark(), rule + ", not " + describe(f.value));
    return std::nullopt;
  }
  const double d = j.get<double>();
  // Written so that NaN fails too.
  if (!(std::isfinite(d) && d >= min && (!max || d <= *max))) {
    diags.add(f.mark(), rule + ", not " + f.value.Scalar());
    return std::nullopt;
  }
  return d;
}

std::optional<bool> read_bool(const Field& f, const std::string& label, Diagnostics& diags) {
  const json j = f.value.IsScalar() ? scalar_json(f.value) : json();
  if (!j.is_boolean()) {
    diags.add(f.mark(), label + " must be true or false, not " + describe(f.value));
    return std::nullopt;
  }
  return j.get<bool>();
}

// A mapping, or nothing at all for an empty section (`defaults:` with no value).
bool expect_map(const Field& f, const std::string& label, Diagnostics& diags) {
  if (f.value.IsMap() || f.value.IsNull()) return true;
  diags.add(f.mark(), label + " must be a mapping, not " + describe(f.value));
  return false;
}

struct RetryFields {
  std::optional<uint32_t> max_attempts;
  std::optional<Millis> initial_interval;
  std::optional<double> backoff;
  std::optional<Millis> max_interval;
  std::optional<double> jitter;
  YAML::Mark initial_mark, max_mark;  // where each interval was written
};

RetryFields read_retry(const Field& f, const std::string& prefix, const std::string& owner,
                       Diagnostics& diags) {
  RetryFields r;
  const std::string label = "\"" + prefix + "\"" + owner;
  if (!expect_map(f, label, diags) || f.value.IsNull()) return r;
  static const std::vector<std::string_view> kAllowed{"max_attempts", "initial_interval", "backoff",
                                                      "max_interval", "jitter"};
  const Fields fields = Fields::read(f.value, kAllowed, "in " + label, diags);
  auto lab = [&](std::string_view key) {
    return "\"" + prefix + "." + std::string(key) + "\"" + owner;
  };
  if (auto* x = fields.find("max_attempts")) r.max_attempts = read_count(*x, lab(x->name), diags);
  if (auto* x = fields.find("initial_interval")) {
    r.initial_interval = read_duration(*x, lab(x->name), false, diags);
    r.initial_mark = x->mark();
  }
  if (auto* x = fields.find("backoff")) r.backoff = read_number(*x, lab(x->name), 1.0, {}, diags);
  if (auto* x = fields.find("max_interval")) {
    r.max_interval = read_duration(*x, lab(x->name), false, diags);
    r.max_mark = x->mark();
  }
  if (auto* x = fields.find("jitter")) r.jitter = read_number(*x, lab(x->name), 0.0, 1.0, diags);
  return r;
}

RetryPolicy merge_retry(const RetryFields& step, const RetryFields& defaults) {
  RetryPolicy p;
  p.max_attempts = step.max_attempts.value_or(defaults.max_attempts.value_or(p.max_attempts));
  p.initial_interval =
      step.initial_interval.value_or(defaults.initial_interval.value_or(p.initial_interval));
  p.backoff = step.backoff.value_or(defaults.backoff.value_or(p.backoff));
  p.max_interval = step.max_interval.value_or(defaults.max_interval.value_or(p.max_interval));
  p.jitter = step.jitter.value_or(defaults.jitter.value_or(p.jitter));
  return p;
}

// An invocation as written, with the nodes needed to point at its parts.
struct InvocationNodes {
  Invocation inv;
  bool has_uses = false;
  YAML::Node uses;       // the value node of `uses`
  YAML::Mark with_mark;  // `with` if present, else `uses`
  YAML::Node with;       // the value node of `with`, or undefined
};

struct StepNodes {
  std::string name;   // empty when missing or invalid
  std::string who;    // `step "x"`, or `step 3` when it has no valid name
  std::string owner;  // " of " + who: appended to labels
  YAML::Node node;
  YAML::Node name_node;
  InvocationNodes run;
  std::optional<InvocationNodes> compensate;
  YAML::Mark compensate_mark;
  std::optional<YAML::Node> depends_on;  // the list, when written
  std::vector<std::pair<std::string, YAML::Node>> depends_names;
  RetryFields retry;
  std::optional<Millis> timeout;
  bool continue_on_failure = false;
  std::vector<uint32_t> deps;  // resolved indexes
};

void read_with(const Field& f, const std::string& label, InvocationNodes& out,
               JsonConverter& converter, Diagnostics& diags) {
  out.with_mark = f.mark();
  if (!expect_map(f, label, diags)) return;
  out.with = f.value;
  if (f.value.IsMap()) out.inv.with = converter.convert(f.value);
}

class Loader {
 public:
  Loader(const std::string& source, const std::string& file, const StepSchemaLookup& lookup,
         bool journaled)
      : source_(source),
        file_(file),
        lookup_(lookup),
        journaled_(journaled),
        diags_(file, journaled),
        converter_(diags_) {}

  Result<Definition> load() {
    // Every string of a workflow ends up in JSON, which is UTF-8: a byte of another encoding
    // (a file saved as Latin-1) is refused here, where it can be pointed at.
    if (!journaled_ && !wide_encoding(source_)) {
      if (auto bad = first_invalid_utf8(source_)) {
        const std::string_view before = std::string_view(source_).substr(0, *bad);
        const size_t line_start = before.rfind('\n');
        YAML::Mark mark;
        mark.line = static_cast<int>(std::count(before.begin(), before.end(), '\n'));
        mark.column =
            static_cast<int>(line_start == std::string_view::npos ? *bad : *bad - line_start - 1);
        diags_.add(mark,
                   "this is not UTF-8 text (a byte of another encoding); save the file as "
                   "UTF-8");
        return fail();
      }
    }
    std::vector<YAML::Node> documents;
    try {
      documents = YAML::LoadAll(source_);
    } catch (const YAML::DeepRecursion& e) {
      // yaml-cpp words this as "bad file".
      diags_.add(e.mark,
                 "lists and mappings are nested too deeply here for the YAML reader; flatten them");
      return fail();
    } catch (const YAML::Exception& e) {
      diags_.add(e.mark, "YAML syntax error: " + e.msg);
      return fail();
    }
    if (documents.size() > 1) {
      diags_.add(documents[1].Mark(),
                 "a file holds one workflow, but a second YAML document starts here; move it to "
                 "its own file");
      return fail();
    }
    const YAML::Node root = documents.empty() ? YAML::Node() : documents[0];
    if (!root.IsDefined() || root.IsNull()) {
      diags_.add(root.Mark(), "the workflow is empty; it needs at least \"name\" and \"steps\"");
      return fail();
    }
    if (!root.IsMap()) {
      diags_.add(root.Mark(),
                 "a workflow must be a mapping with \"name\" and \"steps\", not " + describe(root));
      return fail();
    }
    try {
      read_top(root);
      check_schedule_inputs();
      if (!steps_.empty()) check_steps();
    } catch (const YAML::Exception& e) {
      // The document parsed, so this is a bug in how it is read; say where anyway.
      diags_.add(e.mark, "cannot read this part of the workflow: " + e.msg);
    }
    if (!diags_.empty()) return fail();
    return build();
  }

 private:
  std::unexpected<Error> fail() { return make_error(ErrorCode::invalid_argument, diags_.joined()); }

  void read_top(const YAML::Node& root) {
    static const std::vector<std::string_view> kAllowed{"name",     "description",  "on_failure",
                                                        "timeout",  "max_parallel", "input",
                                                        "defaults", "schedule",     "steps"};
    const Fields f = Fields::read(root, kAllowed, "at the top level", diags_);

    if (auto* x = f.find("name")) {
      if (auto name = read_string(*x, "\"name\"", diags_)) {
        if (is_valid_name(*name)) {
          def_.name = *name;
        } else {
          diags_.add(x->mark(),
                     "invalid workflow name " + in_quotes(*name) + "; " + std::string(kNameRule));
        }
      }
    } else {
      diags_.add(root.Mark(), "missing required key \"name\": every workflow needs a name");
    }
    if (auto* x = f.find("description")) {
      if (auto d = read_string(*x, "\"description\"", diags_)) def_.description = *d;
    }
    if (auto* x = f.find("on_failure")) {
      if (auto v = read_string(*x, "\"on_failure\"", diags_)) {
        if (*v == "compensate") {
          def_.on_failure = OnFailure::compensate;
        } else if (*v == "halt") {
          def_.on_failure = OnFailure::halt;
        } else {
          diags_.add(x->mark(), "\"on_failure\" must be compensate or halt, not " + in_quotes(*v));
        }
      }
    }
    if (auto* x = f.find("timeout")) def_.timeout = read_duration(*x, "\"timeout\"", true, diags_);
    if (auto* x = f.find("max_parallel")) {
      if (auto n = read_count(*x, "\"max_parallel\"", diags_)) def_.max_parallel = *n;
    }
    if (auto* x = f.find("input")) read_input(*x);
    if (auto* x = f.find("defaults")) read_defaults(*x);
    if (auto* x = f.find("schedule")) read_schedules(*x);

    const Field* steps = f.find("steps");
    if (!steps) {
      diags_.add(root.Mark(), "missing required key \"steps\": a workflow needs a list of steps");
      return;
    }
    if (!steps->value.IsSequence()) {
      diags_.add(steps->mark(), "\"steps\" must be a list of steps, not " + describe(steps->value));
      return;
    }
    if (steps->value.size() == 0) {
      diags_.add(steps->mark(), "\"steps\" must list at least one step");
      return;
    }
    if (!journaled_ && steps->value.size() > kMaxSteps) {
      diags_.add(steps->mark(), "\"steps\" lists " + std::to_string(steps->value.size()) +
                                    " steps, more than the " + std::to_string(kMaxSteps) +
                                    " a workflow may have; split it into workflows");
      return;
    }
    for (const YAML::Node& s : steps->value) read_step(s);
  }

  void read_schedules(const Field& f) {
    if (f.value.IsNull()) return;
    if (!f.value.IsSequence()) {
      diags_.add(f.mark(),
                 "\"schedule\" must be a list of schedules such as - cron: \"0 3 * * *\", "
                 "not " +
                     describe(f.value));
      return;
    }
    for (const YAML::Node& node : f.value) {
      const std::string who = "schedule " + std::to_string(def_.schedules.size() + 1);
      ScheduleDef sd;
      if (!node.IsMap()) {
        diags_.add(node.Mark(), who + " must be a mapping with \"cron\", not " + describe(node));
        def_.schedules.push_back(std::move(sd));
        continue;
      }
      static const std::vector<std::string_view> kAllowed{"cron",    "timezone", "input",
                                                          "catchup", "overlap",  "max_catchup"};
      const Fields fields = Fields::read(node, kAllowed, "in " + who, diags_);
      std::optional<CronExpr> cron;
      if (auto* x = fields.find("cron")) {
        if (auto text = read_string(*x, "\"cron\" of " + who, diags_)) {
          sd.cron = *text;
          auto parsed = CronExpr::parse(*text);
          if (parsed) {
            cron = std::move(*parsed);
          } else {
            // Point into the expression: past the opening quote of a quoted scalar.
            YAML::Mark at = x->value.Mark();
            const auto pos = static_cast<size_t>(std::max(at.pos, 0));
            const bool quoted =
                pos < source_.size() && (source_[pos] == '"' || source_[pos] == '\'');
            at.column += static_cast<int>(parsed.error().offset) + (quoted ? 1 : 0);
            diags_.add(at, "bad cron expression " + in_quotes(*text) + " in " + who + ": " +
                               parsed.error().message);
          }
        }
      } else {
        diags_.add(node.Mark(), who +
                                    " has no \"cron\"; write when it fires, such as cron: "
                                    "\"0 3 * * *\"");
      }
      const date::time_zone* zone = find_zone("UTC");
      if (auto* x = fields.find("timezone")) {
        if (auto tz = read_string(*x, "\"timezone\" of " + who, diags_)) {
          sd.timezone = *tz;
          zone = find_zone(*tz);
          if (!zone) {
            diags_.add(x->mark(), "unknown time zone " + in_quotes(*tz) + " in " + who +
                                      "; use a name from the tz database, such as Europe/Berlin, "
                                      "America/New_York or UTC");
          }
        }
      }
      if (cron && zone && !next_fire(*cron, *zone, from_unix_ms(0))) {
        const Field* x = fields.find("cron");
        diags_.add(x->mark(), "cron expression " + in_quotes(sd.cron) + " in " + who +
                                  " never fires (no such date); check the day and month fields");
      }
      if (auto* x = fields.find("input")) {
        if (x->value.IsMap()) {
          sd.input = converter_.convert(x->value);
          check_schedule_input(*x, sd.input, who);
          schedule_inputs_.emplace_back(def_.schedules.size(), x->value.Mark());
        } else if (!x->value.IsNull()) {
          diags_.add(x->mark(),
                     "\"input\" of " + who + " must be a mapping, not " + describe(x->value));
        }
      } else {
        schedule_inputs_.emplace_back(def_.schedules.size(), node.Mark());
      }
      if (auto* x = fields.find("catchup")) {
        if (auto v = read_string(*x, "\"catchup\" of " + who, diags_)) {
          if (*v == "none") {
            sd.catchup = Catchup::none;
          } else if (*v == "latest") {
            sd.catchup = Catchup::latest;
          } else if (*v == "all") {
            sd.catchup = Catchup::all;
          } else {
            diags_.add(x->mark(), "\"catchup\" of " + who + " must be none, latest or all, not " +
                                      in_quotes(*v));
          }
        }
      }
      if (auto* x = fields.find("overlap")) {
        if (auto v = read_string(*x, "\"overlap\" of " + who, diags_)) {
          if (*v == "skip") {
            sd.overlap = Overlap::skip;
          } else if (*v == "allow") {
            sd.overlap = Overlap::allow;
          } else {
            diags_.add(x->mark(),
                       "\"overlap\" of " + who + " must be skip or allow, not " + in_quotes(*v));
          }
        }
      }
      if (auto* x = fields.find("max_catchup")) {
        if (auto n = read_count(*x, "\"max_catchup\" of " + who, diags_, kMaxCatchup)) {
          sd.max_catchup = *n;
        }
      }
      def_.schedules.push_back(std::move(sd));
    }
  }

  // A scheduled start must carry the input keys the workflow requires.
  void check_schedule_inputs() {
    for (const auto& [i, mark] : schedule_inputs_) {
      std::vector<std::string_view> missing;
      for (const auto& key : def_.required_input) {
        if (!def_.schedules[i].input.contains(key)) missing.push_back(key);
      }
      if (!missing.empty()) {
        diags_.add(mark, "the input of schedule " + std::to_string(i + 1) +
                             " lacks required input keys: " + join(missing, ", "));
      }
    }
  }

  void read_input(const Field& f) {
    if (!expect_map(f, "\"input\"", diags_) || f.value.IsNull()) return;
    const Fields fields = Fields::read(f.value, {"required"}, "in \"input\"", diags_);
    const Field* req = fields.find("required");
    if (!req) return;
    if (!req->value.IsSequence()) {
      diags_.add(req->mark(),
                 "\"input.required\" must be a list of input keys, not " + describe(req->value));
      return;
    }
    for (const YAML::Node& k : req->value) {
      if (!k.IsScalar()) {
        diags_.add(k.Mark(), "\"input.required\" must list input keys, not " + describe(k));
        continue;
      }
      def_.required_input.push_back(k.Scalar());
    }
  }

  void read_defaults(const Field& f) {
    if (!expect_map(f, "\"defaults\"", diags_) || f.value.IsNull()) return;
    const Fields fields = Fields::read(f.value, {"retry", "timeout"}, "in \"defaults\"", diags_);
    if (auto* x = fields.find("retry"))
      default_retry_ = read_retry(*x, "defaults.retry", "", diags_);
    if (auto* x = fields.find("timeout")) {
      default_timeout_ = read_duration(*x, "\"defaults.timeout\"", true, diags_);
    }
  }

  void read_invocation(const Fields& fields, const std::string& prefix, const std::string& owner,
                       InvocationNodes& out) {
    if (auto* x = fields.find("uses")) {
      out.with_mark = x->mark();
      if (auto u = read_string(*x, "\"" + prefix + "uses\"" + owner, diags_)) {
        if (u->empty()) {
          diags_.add(x->mark(), "\"" + prefix + "uses\"" + owner + " must name a step type");
        } else {
          out.inv.uses = *u;
          out.uses = x->value;
          out.has_uses = true;
        }
      }
    }
    if (auto* x = fields.find("with")) {
      read_with(*x, "\"" + prefix + "with\"" + owner, out, converter_, diags_);
    }
  }

  void read_step(const YAML::Node& node) {
    StepNodes s;
    s.node = node;
    const std::string number = std::to_string(steps_.size() + 1);
    s.who = "step " + number;
    s.owner = " of " + s.who;
    if (!node.IsMap()) {
      diags_.add(node.Mark(), "step " + number +
                                  " must be a mapping with \"name\" and \"uses\", not " +
                                  describe(node));
      steps_.push_back(std::move(s));
      return;
    }
    // The name first, so that every other message can say which step it is about.
    // yaml-cpp throws on node["name"] when the key is absent, so look for it by hand.
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == "name" && it->second.IsScalar() &&
          is_valid_name(it->second.Scalar())) {
        s.who = "step " + in_quotes(it->second.Scalar());
        s.owner = " of " + s.who;
        break;
      }
    }
    static const std::vector<std::string_view> kAllowed{
        "name",       "uses",  "with",    "compensate",
        "depends_on", "retry", "timeout", "continue_on_failure"};
    const Fields f = Fields::read(node, kAllowed, "in " + s.who, diags_);

    if (auto* x = f.find("name")) {
      if (auto name = read_string(*x, "\"name\"" + s.owner, diags_)) {
        if (!is_valid_name(*name)) {
          diags_.add(x->mark(),
                     "invalid step name " + in_quotes(*name) + "; " + std::string(kNameRule));
        } else if (!diags_.journaled() && has_output_part(*name)) {
          diags_.add(x->mark(), "step name " + in_quotes(*name) +
                                    " cannot be named in templates, which read its \".output\" "
                                    "as the start of steps.NAME.output; rename the step so that "
                                    "no part after a dot is \"output\"");
        } else {
          s.name = *name;
          s.name_node = x->value;
        }
      }
    } else {
      diags_.add(node.Mark(),
                 "step " + number + " has no \"name\"; every step needs a unique name");
    }

    read_invocation(f, "", s.owner, s.run);
    if (!f.find("uses")) {
      diags_.add(node.Mark(), s.who + " has no \"uses\"; name the step type it runs");
    }

    if (auto* x = f.find("compensate")) {
      const std::string label = "\"compensate\"" + s.owner;
      s.compensate_mark = x->mark();
      if (x->value.IsMap()) {
        const Fields cf = Fields::read(x->value, {"uses", "with"}, "in " + label, diags_);
        InvocationNodes comp;
        read_invocation(cf, "compensate.", s.owner, comp);
        if (!cf.find("uses")) {
          diags_.add(x->key.Mark(), label + " has no \"uses\"; name the step type that undoes it");
        }
        s.compensate = std::move(comp);
      } else {
        diags_.add(x->mark(), label + " must be a mapping with \"uses\" and \"with\", not " +
                                  describe(x->value));
      }
    }

    if (auto* x = f.find("depends_on")) {
      const std::string label = "\"depends_on\"" + s.owner;
      if (x->value.IsSequence()) {
        s.depends_on = x->value;
        for (const YAML::Node& d : x->value) {
          if (d.IsScalar()) {
            s.depends_names.emplace_back(d.Scalar(), d);
          } else {
            diags_.add(d.Mark(), label + " must list step names, not " + describe(d));
          }
        }
      } else if (x->value.IsScalar()) {
        diags_.add(x->mark(),
                   label + " must be a list of step names; write [" + x->value.Scalar() + "]");
      } else {
        diags_.add(x->mark(), label + " must be a list of step names, not " + describe(x->value));
      }
    }
    if (auto* x = f.find("retry")) s.retry = read_retry(*x, "retry", s.owner, diags_);
    if (auto* x = f.find("timeout")) {
      s.timeout = read_duration(*x, "\"timeout\"" + s.owner, true, diags_);
    }
    if (auto* x = f.find("continue_on_failure")) {
      s.continue_on_failure =
          read_bool(*x, "\"continue_on_failure\"" + s.owner, diags_).value_or(false);
    }
    steps_.push_back(std::move(s));
  }

  void check_steps() {
    std::map<std::string, uint32_t> index;
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      const StepNodes& s = steps_[i];
      if (s.name.empty()) continue;
      auto [it, inserted] = index.emplace(s.name, i);
      if (!inserted) {
        diags_.add(s.name_node.Mark(),
                   "duplicate step name " + in_quotes(s.name) +
                       "; the first step with this name is at line " +
                       std::to_string(steps_[it->second].name_node.Mark().line + 1));
      }
    }
    index_ = std::move(index);

    for (uint32_t i = 0; i < steps_.size(); ++i) {
      StepNodes& s = steps_[i];
      if (!s.depends_on) {
        if (i > 0) s.deps.push_back(i - 1);
        continue;
      }
      for (const auto& [name, node] : s.depends_names) {
        auto it = index_.find(name);
        if (it == index_.end()) {
          diags_.add(node.Mark(), s.who + " depends on " + in_quotes(name) +
                                      ", which is not a step of this workflow");
          continue;
        }
        if (std::find(s.deps.begin(), s.deps.end(), it->second) == s.deps.end()) {
          s.deps.push_back(it->second);
        }
      }
    }

    find_cycles();
    compute_upstream();
    check_retry_intervals();

    for (uint32_t i = 0; i < steps_.size(); ++i) {
      StepNodes& s = steps_[i];
      if (s.run.has_uses) check_invocation(s.run, s, "", false);
      if (s.compensate && s.compensate->has_uses)
        check_invocation(*s.compensate, s, "compensate.", true);
      if (converter_.exhausted()) continue;
      if (s.run.with.IsDefined()) check_templates(s.run.with, i, false);
      if (s.compensate && s.compensate->with.IsDefined())
        check_templates(s.compensate->with, i, true);
    }
  }

  // A first retry delay longer than the cap on every delay is a mistake in one of the two, as
  // Temporal's check says; the policy is the step's fields over the workflow's defaults.
  void check_retry_intervals() {
    auto field = [](bool in_step, std::string_view name) {
      return in_quotes(std::string(in_step ? "retry." : "defaults.retry.") + std::string(name));
    };
    bool defaults_reported = false;
    for (const StepNodes& s : steps_) {
      const RetryPolicy p = merge_retry(s.retry, default_retry_);
      if (p.initial_interval <= p.max_interval) continue;
      const bool step_initial = s.retry.initial_interval.has_value();
      const bool step_max = s.retry.max_interval.has_value();
      // When both come from the defaults, every step would say the same: say it once.
      if (!step_initial && !step_max && std::exchange(defaults_reported, true)) continue;
      const std::string owner = step_initial || step_max ? " of " + s.who : "";
      const std::string max = step_max || default_retry_.max_interval
                                  ? field(step_max, "max_interval")
                                  : "the default max_interval";
      const YAML::Mark mark = step_initial                      ? s.retry.initial_mark
                              : step_max                        ? s.retry.max_mark
                              : default_retry_.initial_interval ? default_retry_.initial_mark
                                                                : default_retry_.max_mark;
      diags_.add(mark, field(step_initial, "initial_interval") + owner + " (" +
                           format_duration(p.initial_interval) + ") is longer than " + max + " (" +
                           format_duration(p.max_interval) +
                           "); make max_interval at least as long as initial_interval");
    }
  }

  // Depth-first over dependencies; a dependency still on the stack closes a cycle.
  void find_cycles() {
    enum class Color { white, grey, black };
    std::vector<Color> color(steps_.size(), Color::white);
    std::vector<uint32_t> stack;
    std::function<void(uint32_t)> visit = [&](uint32_t i) {
      color[i] = Color::grey;
      stack.push_back(i);
      for (uint32_t d : steps_[i].deps) {
        if (color[d] == Color::grey) {
          auto from = std::find(stack.begin(), stack.end(), d);
          std::string path;
          for (auto it = from; it != stack.end(); ++it) path += display_name(*it) + " -> ";
          path += display_name(d);
          const StepNodes& first = steps_[d];
          diags_.add(first.depends_on ? first.depends_on->Mark() : first.node.Mark(),
                     "dependency cycle: " + path + " (each step depends on the next)");
        } else if (color[d] == Color::white) {
          visit(d);
        }
      }
      stack.pop_back();
      color[i] = Color::black;
    };
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      if (color[i] == Color::white) visit(i);
    }
  }

  std::string display_name(uint32_t i) const {
    return steps_[i].name.empty() ? "(step " + std::to_string(i + 1) + ")" : steps_[i].name;
  }

  void compute_upstream() {
    upstream_.assign(steps_.size(), std::vector<bool>(steps_.size(), false));
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      std::vector<uint32_t> todo = steps_[i].deps;
      while (!todo.empty()) {
        const uint32_t d = todo.back();
        todo.pop_back();
        if (upstream_[i][d]) continue;
        upstream_[i][d] = true;
        todo.insert(todo.end(), steps_[d].deps.begin(), steps_[d].deps.end());
      }
    }
  }

  void check_invocation(const InvocationNodes& n, const StepNodes& s, const std::string& prefix,
                        bool compensation) {
    if (!lookup_) return;
    const std::string& uses = n.inv.uses;
    const std::optional<StepSchema> schema = lookup_(uses);
    if (!schema) {
      diags_.add(n.uses.Mark(), "unknown step type " + in_quotes(uses) + " in \"" + prefix +
                                    "uses\"" + s.owner +
                                    "; is the plugin that provides it installed?");
      return;
    }
    if (compensation && !schema->can_compensate) {
      diags_.add(n.uses.Mark(), "step type " + in_quotes(uses) +
                                    " cannot compensate, so it cannot be "
                                    "used in \"compensate\"" +
                                    s.owner);
    }
    const std::string type_name = "step type " + in_quotes(uses);
    if (n.with.IsMap()) {
      for (auto it = n.with.begin(); it != n.with.end(); ++it) {
        if (!it->first.IsScalar()) continue;
        const std::string& key = it->first.Scalar();
        auto p = std::find_if(schema->params.begin(), schema->params.end(),
                              [&](const StepSchema::Param& q) { return q.name == key; });
        if (p == schema->params.end()) {
          if (!schema->accepts_any_params) {
            std::vector<std::string_view> names;
            for (const auto& q : schema->params) names.push_back(q.name);
            diags_.add(it->first.Mark(),
                       "unknown parameter " + in_quotes(key) + " for " + type_name + " in \"" +
                           prefix + "with\"" + s.owner + "; " +
                           (names.empty() ? std::string("it takes no parameters")
                                          : "its parameters are: " + join(names, ", ")));
          }
          continue;
        }
        const auto v = n.inv.with.find(key);
        if (v == n.inv.with.end()) continue;
        if (auto why = param_type_mismatch(p->type, *v)) {
          diags_.add(it->second.IsNull() ? it->first.Mark() : it->second.Mark(),
                     "parameter " + in_quotes(key) + " of " + type_name + " must be " + *why +
                         ", not " + describe(it->second) + hint_for(p->type, it->second));
        }
      }
    }
    for (const auto& p : schema->params) {
      if (!p.required || n.inv.with.contains(p.name)) continue;
      diags_.add(n.with_mark, "missing required parameter " + in_quotes(p.name) + " of " +
                                  type_name + " in \"" + prefix + "with\"" + s.owner);
    }
  }

  static std::string hint_for(const std::string& type, const YAML::Node& value) {
    if (type == "string" && value.IsScalar()) return " (quote it to pass it as a string)";
    return "";
  }

  void check_templates(const YAML::Node& node, uint32_t self, bool compensation) {
    if (node.IsMap()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (it->first.IsScalar() && has_template(it->first.Scalar())) {
          diags_.add(it->first.Mark(), template_in_key(it->first.Scalar()));
        }
        check_templates(it->second, self, compensation);
      }
      return;
    }
    if (node.IsSequence()) {
      for (const YAML::Node& item : node) check_templates(item, self, compensation);
      return;
    }
    if (!node.IsScalar()) return;
    const json value = scalar_json(node);
    if (!value.is_string()) return;
    auto refs = templates_in(value, node.Mark());
    if (!refs) return;
    for (const TemplateRef& ref : *refs) {
      if (auto why = check_ref(ref, self, compensation)) diags_.add(node.Mark(), *why);
    }
  }

  // The templates in `value`; malformed ones are reported at `mark`, one line each.
  std::optional<std::vector<TemplateRef>> templates_in(const json& value, const YAML::Mark& mark) {
    auto refs = find_templates(value);
    if (refs) return std::move(*refs);
    std::istringstream lines(refs.error().message);
    for (std::string line; std::getline(lines, line);) diags_.add(mark, line);
    return std::nullopt;
  }

  // A schedule's input is rendered when it fires, with what a fire knows: its time, its
  // instance id and the workflow's name.
  void check_schedule_input(const Field& f, const json& input, const std::string& who) {
    auto refs = templates_in(input, f.mark());
    if (!refs) return;
    for (const TemplateRef& ref : *refs) {
      const std::vector<std::string>& p = ref.path;
      const bool known = p.size() == 2 && ((p[0] == "schedule" && p[1] == "fire_time") ||
                                           (p[0] == "instance" && p[1] == "id") ||
                                           (p[0] == "workflow" && p[1] == "name"));
      if (!known) {
        diags_.add(f.mark(), "\"input\" of " + who + ": template ${{ " + ref.expression +
                                 " }} cannot be used in a schedule's input, which can use "
                                 "schedule.fire_time, instance.id and workflow.name");
      }
    }
  }

  std::optional<std::string> check_ref(const TemplateRef& ref, uint32_t self, bool compensation) {
    const std::string shown = "template ${{ " + ref.expression + " }}";
    const std::vector<std::string>& p = ref.path;
    const std::string& root = p[0];
    if (root == "input") return std::nullopt;
    if (root == "instance") {
      if (p.size() == 2 && p[1] == "id") return std::nullopt;
      return shown + ": the only instance field is id (${{ instance.id }})";
    }
    if (root == "workflow") {
      if (p.size() == 2 && p[1] == "name") return std::nullopt;
      return shown + ": the only workflow field is name (${{ workflow.name }})";
    }
    if (root == "schedule") {
      if (p.size() == 2 && p[1] == "fire_time") return std::nullopt;
      return shown + ": the only schedule field is fire_time (${{ schedule.fire_time }})";
    }
    if (root == "secrets") {
      if (p.size() == 2) return std::nullopt;
      return shown + ": a secret is named by one word, as in ${{ secrets.NAME }}";
    }
    if (root != "steps") {
      return shown + " uses unknown name " + in_quotes(root) +
             "; templates can use input, steps.NAME.output, instance.id, workflow.name, "
             "schedule.fire_time and secrets.NAME";
    }
    if (p.size() < 3 || p[2] != "output") {
      return shown + ": write steps.NAME.output to use a step's output";
    }
    const StepNodes& me = steps_[self];
    const std::string user = compensation ? "the compensation of " + me.who : me.who;
    auto it = index_.find(p[1]);
    if (it == index_.end()) {
      return shown + " in " + user + " names step " + in_quotes(p[1]) +
             ", which is not a step of this workflow";
    }
    const uint32_t target = it->second;
    if (target == self) {
      if (compensation) return std::nullopt;
      return shown + " in " + user + " uses the step's own output, which does not exist yet";
    }
    if (upstream_[self][target]) return std::nullopt;
    return shown + " in " + user + " uses step " + in_quotes(p[1]) +
           ", which is not upstream of it; add " + in_quotes(p[1]) + " to its depends_on";
  }

  Definition build() {
    def_.version = definition_version(source_);
    def_.source = source_;
    def_.file = file_;
    for (StepNodes& s : steps_) {
      StepDef d;
      d.name = s.name;
      d.run = std::move(s.run.inv);
      if (s.compensate) d.compensate = std::move(s.compensate->inv);
      d.depends_on = std::move(s.deps);
      d.retry = merge_retry(s.retry, default_retry_);
      d.timeout = s.timeout ? s.timeout : default_timeout_;
      d.continue_on_failure = s.continue_on_failure;
      def_.steps.push_back(std::move(d));
    }
    return std::move(def_);
  }

  const std::string& source_;
  const std::string& file_;
  const StepSchemaLookup& lookup_;
  const bool journaled_;
  Diagnostics diags_;
  JsonConverter converter_;
  Definition def_;
  RetryFields default_retry_;
  std::optional<Millis> default_timeout_;
  std::vector<StepNodes> steps_;
  std::map<std::string, uint32_t> index_;
  std::vector<std::vector<bool>> upstream_;  // upstream_[i][j]: j is a transitive dependency of i
  std::vector<std::pair<size_t, YAML::Mark>> schedule_inputs_;  // schedule index, where to point
};

}  // namespace

Result<Definition> load_workflow(const std::string& source, const std::string& file,
                                 const StepSchemaLookup& lookup, bool journaled) {
  return Loader(source, file, lookup, journaled).load();
}

Result<Definition> load_workflow_file(const std::string& path, const StepSchemaLookup& lookup) {
  if (std::error_code ec; std::filesystem::is_directory(path, ec)) {
    return make_error(ErrorCode::invalid_argument,
                      path + ": is a directory, not a workflow file; name a .yaml file in it");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return make_error(err == ENOENT ? ErrorCode::not_found : ErrorCode::invalid_argument,
                      path + ": cannot read the workflow file: " + std::strerror(err));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return make_error(ErrorCode::invalid_argument,
                      path + ": cannot read the workflow file: " + std::strerror(errno));
  }
  return load_workflow(text.str(), path, lookup);
}

std::optional<std::string> param_type_mismatch(const std::string& type, const json& v,
                                               bool rendered) {
  if (v.is_string() && has_template(v.get_ref<const std::string&>())) {
    return std::nullopt;
  }
  if (rendered && v.is_null()) return std::nullopt;
  if (type == "string")
    return v.is_string() ? std::nullopt : std::optional<std::string>("a string");
  if (type == "integer") {
    const bool whole = v.is_number_integer() ||
                       (rendered && v.is_number_float() && std::isfinite(v.get<double>()) &&
                        std::trunc(v.get<double>()) == v.get<double>());
    return whole ? std::nullopt : std::optional<std::string>("an integer");
  }
  if (type == "number")
    return v.is_number() ? std::nullopt : std::optional<std::string>("a number");
  if (type == "boolean") {
    return v.is_boolean() ? std::nullopt : std::optional<std::string>("true or false");
  }
  if (type == "array") return v.is_array() ? std::nullopt : std::optional<std::string>("a list");
  if (type == "object") {
    return v.is_object() ? std::nullopt : std::optional<std::string>("a mapping");
  }
  return std::nullopt;
}

// 64-bit FNV-1a: stable across builds and platforms, which std::hash is not.
std::string definition_version(const std::string& source) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : source) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace saga
