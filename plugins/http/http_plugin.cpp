// The `http` step type: one HTTP request through libcurl, its status mapped to a step result.
//
// Each worker thread keeps one curl easy handle for its lifetime: libcurl keeps its connection
// cache in the handle, so a thread's next request to the same server reuses the connection.
// The transfer is bounded by the step's `timeout` and the attempt's deadline, and stops when
// the attempt is cancelled.
//
// libcurl, and the TLS and protocol libraries it brings (5 MiB of sagad's resident memory), is
// loaded at the first request rather than with the plugin: a daemon whose workflows never make
// an HTTP request does not carry it.
#include <curl/curl.h>

#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <expected>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <saga/duration.hpp>
#include <saga/json_depth.hpp>
#include <saga/step.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using saga::json;
using saga::Result;
using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

constexpr Millis kDefaultTimeout = 30s;
// A response body larger than this is refused: the output lands in the journal.
constexpr size_t kBodyCap = 16u << 20;
// How much of an unexpected response's body goes into the error.
constexpr size_t kErrorBodySnippet = 512;

// Replaces bytes that are not UTF-8 with U+FFFD: headers and bodies become JSON text.
std::string valid_utf8(std::string_view s) {
  const std::string dumped =
      json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  return json::parse(dumped).get<std::string>();
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string format_duration(Millis d) {
  if (d < 1s || d.count() % 1000 != 0) return std::to_string(d.count()) + "ms";
  return std::to_string(d.count() / 1000) + "s";
}

// The URL as errors show it: without a password in its userinfo part.
std::string redacted(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  const size_t authority = scheme_end + 3;
  const size_t authority_end = url.find_first_of("/?#", authority);
  const size_t at = url.rfind('@', authority_end == std::string::npos ? url.size() : authority_end);
  if (at == std::string::npos || at < authority) return url;
  return url.substr(0, authority) + "***" + url.substr(at);
}

// What to send, checked and converted from `with:`.
struct Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  bool has_content_type = false;
  std::optional<std::string> body;
  bool body_is_json = false;
  std::vector<long> expect;  // empty: any 2xx
  Millis timeout = kDefaultTimeout;
  bool follow_redirects = false;
};

bool has_line_break(std::string_view s) {
  return s.find_first_of("\r\n", 0) != s.npos;
}

std::expected<Request, std::string> parse_request(const json& params) {
  if (!params.is_object()) return std::unexpected("`with:` must be an object");
  Request req;
  auto field = [&](const char* name) -> const json* {
    auto it = params.find(name);
    return it == params.end() || it->is_null() ? nullptr : &*it;
  };

  if (const json* method = field("method")) {
    if (!method->is_string() || method->get_ref<const std::string&>().empty()) {
      return std::unexpected("`method` must be a non-empty string");
    }
    req.method.clear();
    for (char c : method->get_ref<const std::string&>()) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
        return std::unexpected("`method` must be an HTTP method such as GET or POST");
      }
      req.method += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
  }

  const json* url = field("url");
  if (url == nullptr || !url->is_string() || url->get_ref<const std::string&>().empty()) {
    return std::unexpected("`url` must be a non-empty string");
  }
  req.url = url->get<std::string>();
  // libcurl would guess a scheme for "host/path"; a URL that says none is a mistake here.
  const std::string scheme = lowercase(req.url.substr(0, req.url.find("://") + 3));
  if (scheme != "http://" && scheme != "https://") {
    return std::unexpected("`url` must start with http:// or https://, not `" +
                           req.url.substr(0, 40) + "`");
  }

  if (const json* follow = field("follow_redirects")) {
    if (!follow->is_boolean()) return std::unexpected("`follow_redirects` must be true or false");
    req.follow_redirects = follow->get<bool>();
  }

  if (const json* headers = field("headers")) {
    if (!headers->is_object()) return std::unexpected("`headers` must be an object of Name: value");
    for (const auto& [name, value] : headers->items()) {
      if (name.empty() || name.find_first_of(":\r\n \t", 0) != std::string::npos) {
        return std::unexpected("`headers` has an invalid header name `" + name + "`");
      }
      std::string text;
      if (value.is_string()) {
        text = value.get<std::string>();
      } else if (value.is_number() || value.is_boolean()) {
        text = value.dump();
      } else {
        return std::unexpected("`headers." + name + "` must be a string, number or boolean");
      }
      if (has_line_break(text) || text.find('\0') != std::string::npos) {
        return std::unexpected("`headers." + name + "` cannot contain line breaks");
      }
      if (lowercase(name) == "content-type") req.has_content_type = true;
      // "Name;" is how libcurl is told to send a header with an empty value.
      req.headers.push_back(text.empty() ? name + ";" : name + ": " + text);
    }
  }

  const json* json_body = field("json");
  const json* body = field("body");
  if (json_body != nullptr && body != nullptr) {
    return std::unexpected("give either `json` or `body`, not both");
  }
  if (json_body != nullptr) {
    req.body = json_body->dump();
    req.body_is_json = true;
  } else if (body != nullptr) {
    if (!body->is_string()) return std::unexpected("`body` must be a string (use `json` for JSON)");
    req.body = body->get<std::string>();
  }

  if (const json* expect = field("expect")) {
    if (!expect->is_array()) return std::unexpected("`expect` must be a list of HTTP status codes");
    for (const json& code : *expect) {
      if (!code.is_number_integer() || code.get<int64_t>() < 100 || code.get<int64_t>() > 599) {
        return std::unexpected("`expect` must be a list of HTTP status codes (100-599)");
      }
      req.expect.push_back(code.get<long>());
    }
    if (req.expect.empty()) return std::unexpected("`expect` cannot be empty");
  }

  if (const json* timeout = field("timeout")) {
    const std::optional<Millis> parsed =
        timeout->is_string() ? saga::parse_duration(timeout->get_ref<const std::string&>())
                             : std::nullopt;
    if (!parsed || *parsed <= 0ms) {
      return std::unexpected("`timeout` must be a positive duration such as 10s or 250ms");
    }
    req.timeout = *parsed;
  }
  return req;
}

// The libcurl functions this plugin calls, from the library loaded at the first request.
struct Curl {
  boost::dll::shared_library library;
  CURLcode (*global_init)(long flags) = nullptr;
  CURL* (*easy_init)() = nullptr;
  void (*easy_cleanup)(CURL* curl) = nullptr;
  void (*easy_reset)(CURL* curl) = nullptr;
  CURLcode (*easy_setopt)(CURL* curl, CURLoption option, ...) = nullptr;
  CURLcode (*easy_perform)(CURL* curl) = nullptr;
  CURLcode (*easy_getinfo)(CURL* curl, CURLINFO info, ...) = nullptr;
  const char* (*easy_strerror)(CURLcode code) = nullptr;
  curl_slist* (*slist_append)(curl_slist* list, const char* line) = nullptr;
  void (*slist_free_all)(curl_slist* list) = nullptr;
};

// libcurl's soname on Debian (package libcurl4), the ABI of every libcurl since 7.16.
constexpr const char* kLibcurl = "libcurl.so.4";

std::expected<Curl, std::string> load_curl() {
  try {
    Curl c;
    c.library.load(kLibcurl, boost::dll::load_mode::search_system_folders);
    auto bind = [&c](auto& fn, const char* name) {
      fn = &c.library.get<std::remove_pointer_t<std::remove_reference_t<decltype(fn)>>>(name);
    };
    bind(c.global_init, "curl_global_init");
    bind(c.easy_init, "curl_easy_init");
    bind(c.easy_cleanup, "curl_easy_cleanup");
    bind(c.easy_reset, "curl_easy_reset");
    bind(c.easy_setopt, "curl_easy_setopt");
    bind(c.easy_perform, "curl_easy_perform");
    bind(c.easy_getinfo, "curl_easy_getinfo");
    bind(c.easy_strerror, "curl_easy_strerror");
    bind(c.slist_append, "curl_slist_append");
    bind(c.slist_free_all, "curl_slist_free_all");
    if (c.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      return std::unexpected(std::string("curl_global_init failed"));
    }
    return c;
  } catch (const std::exception& e) {
    return std::unexpected(std::string(e.what()));
  }
}

// Loaded once, by the first request, and kept: the plugin is never unloaded, and other threads
// may be mid-transfer. nullptr, with the reason in `why`, when libcurl cannot be loaded.
const Curl* curl_library(std::string& why) {
  static const std::expected<Curl, std::string> loaded = load_curl();
  if (!loaded) {
    why = "cannot load " + std::string(kLibcurl) + " (" + loaded.error() +
          "); install Debian's libcurl4 package";
    return nullptr;
  }
  return &*loaded;
}

// The calling thread's handle, reset to defaults but keeping its open connections.
CURL* thread_handle(const Curl& curl) {
  struct Handle {
    const Curl* curl = nullptr;
    CURL* handle = nullptr;
    ~Handle() {
      if (handle != nullptr) curl->easy_cleanup(handle);
    }
  };
  thread_local Handle h;
  if (h.handle == nullptr) {
    h.curl = &curl;
    h.handle = curl.easy_init();
  } else {
    curl.easy_reset(h.handle);
  }
  return h.handle;
}

// What the callbacks collect during one transfer. Lives on the stack of perform().
struct Transfer {
  const saga::Context& ctx;
  std::string body;
  bool body_too_large = false;
  std::map<std::string, std::string> headers;  // lowercased name -> value
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t.body.size() + n > kBodyCap) {
    t.body_too_large = true;
    return 0;  // makes libcurl stop with CURLE_WRITE_ERROR
  }
  t.body.append(data, n);
  return n;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const size_t n = size * count;
  const std::string_view line(data, n);
  // A status line starts a new response (after "100 Continue", say): only the last one counts.
  if (line.starts_with("HTTP/")) {
    t.headers.clear();
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return n;
  const std::string name = lowercase(trim(line.substr(0, colon)));
  const std::string_view value = trim(line.substr(colon + 1));
  auto [it, inserted] = t.headers.try_emplace(name, value);
  // Repeated headers combine as HTTP defines: one value, comma-separated.
  if (!inserted) it->second.append(", ").append(value);
  return n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto& t = *static_cast<Transfer*>(user);
  return t.ctx.cancelled() ? 1 : 0;  // non-zero aborts with CURLE_ABORTED_BY_CALLBACK
}

struct SlistFree {
  const Curl* curl;
  void operator()(curl_slist* list) const { curl->slist_free_all(list); }
};
using Slist = std::unique_ptr<curl_slist, SlistFree>;

bool append(const Curl& curl, Slist& list, const std::string& line) {
  curl_slist* grown = curl.slist_append(list.get(), line.c_str());
  if (grown == nullptr) return false;
  list.release();
  list.reset(grown);
  return true;
}

// Parsed whenever it is JSON, whatever the content type says: servers often label JSON as
// text/plain, and a body that does not parse is useless as JSON even when labelled so. A body
// nested too deeply to handle as JSON is text too.
json response_body(const std::string& body) {
  // The output holds the body one level down.
  if (saga::json_nests_deeper_than(body, saga::kMaxJsonDepth - 1)) return valid_utf8(body);
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_discarded()) return parsed;
  return valid_utf8(body);
}

Result perform(saga::Context& ctx) {
  auto req = parse_request(ctx.params());
  if (!req) return Result::fail("http: " + req.error());
  const std::string target = req->method + " " + redacted(req->url);

  Millis budget = req->timeout;
  if (const auto deadline = ctx.deadline()) {
    const auto left = std::chrono::floor<Millis>(*deadline - std::chrono::system_clock::now());
    if (left <= 0ms) return Result::retry(target + ": timed out before the request was sent");
    budget = std::min(budget, left);
  }

  std::string why;
  const Curl* lib = curl_library(why);
  if (lib == nullptr) return Result::fail(target + ": " + why);
  const Curl& api = *lib;
  CURL* curl = thread_handle(api);
  if (curl == nullptr) return Result::retry(target + ": cannot create a libcurl handle");

  Slist headers(nullptr, SlistFree{&api});
  // libcurl would otherwise wait for "100 Continue" before sending a large body: one more
  // round trip for servers that never send it.
  bool headers_ok = append(api, headers, "Expect:");
  if (req->body_is_json && !req->has_content_type) {
    headers_ok = headers_ok && append(api, headers, "Content-Type: application/json");
  }
  for (const std::string& h : req->headers) headers_ok = headers_ok && append(api, headers, h);
  if (!headers_ok) return Result::retry(target + ": out of memory building headers");

  Transfer t{ctx, {}, false, {}};
  char error[CURL_ERROR_SIZE] = "";
  api.easy_setopt(curl, CURLOPT_URL, req->url.c_str());
  // A workflow's URL is often templated from data: never let it name file:// or the like.
  api.easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  if (req->follow_redirects) {  // off by default: thread_handle() reset the handle
    api.easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    api.easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
    // A redirected POST stays a POST with its body (libcurl would turn it into a GET after a
    // 301, 302 or 303, and a 2xx to that GET would pass for the POST's success).
    api.easy_setopt(curl, CURLOPT_POSTREDIR, static_cast<long>(CURL_REDIR_POST_ALL));
    api.easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  }
  // Signals cannot be used for timeouts on a worker thread of a multithreaded daemon.
  api.easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  api.easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(budget.count()));
  api.easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  api.easy_setopt(curl, CURLOPT_USERAGENT, "saga-http/1.0");
  api.easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
  api.easy_setopt(curl, CURLOPT_WRITEFUNCTION, &on_body);
  api.easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  api.easy_setopt(curl, CURLOPT_HEADERFUNCTION, &on_header);
  api.easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  api.easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  api.easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &on_progress);
  api.easy_setopt(curl, CURLOPT_XFERINFODATA, &t);

  if (req->body || req->method == "POST") {
    // A POST without a body still sends "Content-Length: 0", as servers expect.
    const std::string& body = req->body ? *req->body : req->body.emplace();
    api.easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    api.easy_setopt(curl, CURLOPT_COPYPOSTFIELDS, body.c_str());
    if (req->method != "POST") api.easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method.c_str());
  } else if (req->method == "HEAD") {
    api.easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (req->method != "GET") {
    api.easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method.c_str());
  }

  const CURLcode rc = api.easy_perform(curl);
  // The handle outlives this call; it must not keep pointers into this frame.
  api.easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  api.easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);

  if (rc != CURLE_OK) {
    const std::string detail = error[0] != '\0' ? error : api.easy_strerror(rc);
    switch (rc) {
      case CURLE_ABORTED_BY_CALLBACK:
        return Result::retry(target + ": cancelled");
      case CURLE_OPERATION_TIMEDOUT:
        return Result::retry(target + ": timed out after " + format_duration(budget));
      case CURLE_WRITE_ERROR:
        if (t.body_too_large) {
          return Result::fail(target + ": response body larger than " +
                              std::to_string(kBodyCap >> 20) + " MiB");
        }
        return Result::retry(target + ": " + detail);
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return Result::fail(target + ": " + detail);
      default:
        // Connection refused, DNS, TLS, a reset: the server may be back on the next attempt.
        return Result::retry(target + ": " + detail);
    }
  }

  long status = 0;
  api.easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);

  json headers_out = json::object();
  for (const auto& [name, value] : t.headers) headers_out[valid_utf8(name)] = valid_utf8(value);
  const bool expected = req->expect.empty()
                            ? status >= 200 && status < 300
                            : std::ranges::find(req->expect, status) != req->expect.end();
  if (expected) {
    return Result::ok(json{
        {"status", status}, {"headers", std::move(headers_out)}, {"body", response_body(t.body)}});
  }

  std::string message = target + " returned " + std::to_string(status);
  if (status >= 300 && status < 400) {
    if (auto location = t.headers.find("location"); location != t.headers.end()) {
      message += " to " + valid_utf8(location->second);
    }
    if (!req->follow_redirects) message += " (set follow_redirects: true to follow it)";
  }
  const std::string_view snippet = trim(std::string_view(t.body).substr(0, kErrorBodySnippet));
  if (!snippet.empty()) message += ": " + valid_utf8(snippet);
  // 408: the server gave up waiting for the request, which the next attempt may send in time.
  if (status == 408 || status == 429 || status >= 500) return Result::retry(std::move(message));
  return Result::fail(std::move(message));
}

class Http final : public saga::Step {
 public:
  Result run(saga::Context& ctx) override { return perform(ctx); }
  // The undo is a request too, given in `compensate.with`.
  Result compensate(saga::Context& ctx) override { return perform(ctx); }
};

std::vector<saga::Param> http_params() {
  using saga::ParamType;
  return {
      {"method", ParamType::string, false, "GET", "HTTP method"},
      {"url", ParamType::string, true, nullptr, "http:// or https:// URL"},
      {"headers", ParamType::object, false, nullptr, "Request headers, Name: value"},
      {"json", ParamType::any, false, nullptr,
       "Request body sent as JSON, with Content-Type: application/json"},
      {"body", ParamType::string, false, nullptr, "Request body sent as is (instead of json)"},
      {"expect", ParamType::array, false, nullptr,
       "Status codes that mean success (default: any 2xx)"},
      {"timeout", ParamType::string, false, "30s",
       "Bound on the whole request, within the attempt's timeout"},
      {"follow_redirects", ParamType::boolean, false, false,
       "Follow 3xx redirects (up to 10, http and https only); else a 3xx fails, naming where it "
       "leads"},
  };
}

}  // namespace

SAGA_PLUGIN("http", "1.0",
            {saga::step_type<Http>(
                "http",
                "Sends one HTTP request: 2xx (or `expect`) is ok with status, headers and body; "
                "connection errors, timeouts, 408, 429 and 5xx retry; other statuses fail",
                http_params(), /*can_compensate=*/true)});
