#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <saga/json_depth.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "plugin_harness.hpp"

namespace {

using saga::test::AttemptSpec;
using saga::test::json;
using saga::test::Outcome;
using namespace std::chrono_literals;

struct HttpRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lowercased names
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds delay{0};  // before the response is sent
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

std::string lowercase(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A minimal HTTP/1.1 server on 127.0.0.1 with an ephemeral port: one thread per connection,
// keep-alive, Content-Length bodies only, answers from a handler. Enough to see what the
// plugin sends and to make it face the answers a real server gives.
class TestServer {
 public:
  explicit TestServer(Handler handler) : handler_(std::move(handler)) {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(listener_, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~TestServer() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (int fd : connections_) shutdown(fd, SHUT_RDWR);
    }
    wake_.notify_all();
    acceptor_.join();
    for (std::thread& t : workers_) t.join();
    for (int fd : connections_) close(fd);
    close(listener_);
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  size_t connections() const {
    std::lock_guard lock(mu_);
    return connections_.size();
  }

  std::vector<HttpRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  bool stopping() const {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  void accept_loop() {
    while (!stopping()) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lock(mu_);
      if (stopping_) {
        close(fd);
        return;
      }
      connections_.push_back(fd);
      workers_.emplace_back([this, fd] { serve(fd); });
    }
  }

  // Reads one request; false when the client closed the connection.
  static bool read_request(int fd, std::string& buffer, HttpRequest& req) {
    size_t header_end;
    while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (!read_more(fd, buffer)) return false;
    }
    const std::string head = buffer.substr(0, header_end);
    buffer.erase(0, header_end + 4);
    size_t line_end = head.find("\r\n");
    const std::string request_line = head.substr(0, line_end);
    const size_t sp1 = request_line.find(' ');
    const size_t sp2 = request_line.find(' ', sp1 + 1);
    req.method = request_line.substr(0, sp1);
    req.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      const size_t value_start = line.find_first_not_of(' ', colon + 1);
      req.headers[lowercase(line.substr(0, colon))] =
          value_start == std::string::npos ? "" : line.substr(value_start);
    }
    const auto length = req.headers.find("content-length");
    const size_t body_size = length == req.headers.end() ? 0 : std::stoul(length->second);
    while (buffer.size() < body_size) {
      if (!read_more(fd, buffer)) return false;
    }
    req.body = buffer.substr(0, body_size);
    buffer.erase(0, body_size);
    return true;
  }

  static bool read_more(int fd, std::string& buffer) {
    char chunk[4096];
    const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
    return true;
  }

  void serve(int fd) {
    std::string buffer;
    HttpRequest req;
    while (read_request(fd, buffer, req)) {
      {
        std::lock_guard lock(mu_);
        requests_.push_back(req);
      }
      const HttpResponse resp = handler_(req);
      {
        std::unique_lock lock(mu_);
        if (wake_.wait_for(lock, resp.delay, [this] { return stopping_; })) return;
      }
      std::string out = "HTTP/1.1 " + std::to_string(resp.status) + " Canned\r\n";
      out += "Content-Length: " + std::to_string(resp.body.size()) + "\r\n";
      for (const auto& [name, value] : resp.headers) out += name + ": " + value + "\r\n";
      out += "\r\n" + resp.body;
      // MSG_NOSIGNAL: a client that gave up must not kill the test with SIGPIPE.
      if (send(fd, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
        return;
      }
      req = HttpRequest{};
    }
  }

  Handler handler_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;              // guarded by mu_
  std::vector<int> connections_;       // guarded by mu_
  std::vector<std::thread> workers_;   // guarded by mu_; joined after acceptor_
  std::vector<HttpRequest> requests_;  // guarded by mu_
};

HttpResponse json_response(int status, const json& body) {
  return HttpResponse{status, {{"Content-Type", "application/json"}}, body.dump(), 0ms};
}

const saga_step_type& http_type() {
  static const saga_step_type& type = []() -> const saga_step_type& {
    // Requests to the test server must never take a detour through a proxy from the
    // environment.
    REQUIRE(setenv("no_proxy", "*", 1) == 0);
    return saga::test::find_type(saga::test::load_plugin("saga-http.so"), "http");
  }();
  return type;
}

Outcome run(json params, AttemptSpec spec = {}) {
  spec.params = std::move(params);
  return saga::test::run_attempt(http_type(), spec);
}

}  // namespace

TEST_CASE("http declares its parameters and a compensation", "[http]") {
  const saga_step_type& type = http_type();
  CHECK(type.compensate != nullptr);
  const saga_param* url = saga::test::find_param(type, "url");
  REQUIRE(url != nullptr);
  CHECK(url->required == 1);
  CHECK(url->type == SAGA_PARAM_STRING);
  const saga_param* method = saga::test::find_param(type, "method");
  REQUIRE(method != nullptr);
  CHECK(saga::test::view(method->default_json) == "\"GET\"");
  for (const char* name : {"headers", "json", "body", "expect", "timeout", "follow_redirects"}) {
    const saga_param* p = saga::test::find_param(type, name);
    REQUIRE(p != nullptr);
    CHECK(p->required == 0);
  }
}

TEST_CASE("http: 200 with JSON is ok with status, lowercased headers and parsed body", "[http]") {
  TestServer server([](const HttpRequest&) {
    HttpResponse resp = json_response(200, {{"id", 7}, {"tags", {"a"}}});
    resp.headers.emplace_back("X-Request-Id", "Abc-1");
    return resp;
  });
  const Outcome r = run({{"url", server.url("/orders/7")}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  const json out = r.output();
  CHECK(out.at("status") == 200);
  CHECK(out.at("body") == json{{"id", 7}, {"tags", {"a"}}});
  CHECK(out.at("headers").at("x-request-id") == "Abc-1");
  CHECK(out.at("headers").at("content-type") == "application/json");
  const auto requests = server.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].method == "GET");
  CHECK(requests[0].target == "/orders/7");
}

TEST_CASE("http: a body that is not JSON is a string", "[http]") {
  TestServer server([](const HttpRequest&) {
    return HttpResponse{200, {{"Content-Type", "text/plain"}}, "hello there", 0ms};
  });
  const Outcome r = run({{"url", server.url("/")}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output().at("body") == "hello there");
}

TEST_CASE("http: a JSON body nested too deeply to handle is a string", "[http]") {
  // The output holds the body one level down: 256 levels of body would make 257.
  const size_t levels = GENERATE(size_t{saga::kMaxJsonDepth}, size_t{100'000});
  const std::string deep = std::string(levels, '[') + std::string(levels, ']');
  TestServer server([&](const HttpRequest&) {
    return HttpResponse{200, {{"Content-Type", "application/json"}}, deep, 0ms};
  });
  const Outcome r = run({{"url", server.url("/")}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output().at("body") == deep);
}

TEST_CASE("http: 500 retries, and the next attempt's 200 is ok on the same connection", "[http]") {
  std::atomic<int> calls{0};
  TestServer server([&](const HttpRequest&) {
    return calls++ == 0 ? HttpResponse{500, {}, "database down", 0ms}
                        : json_response(200, {{"done", true}});
  });
  const std::string url = server.url("/flaky");
  const Outcome first = run({{"url", url}});
  REQUIRE(first.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(first.data, Catch::Contains("GET " + url) && Catch::Contains("500") &&
                             Catch::Contains("database down"));
  const Outcome second = run({{"url", url}});
  REQUIRE(second.outcome == SAGA_OUTCOME_OK);
  CHECK(second.output().at("body") == json{{"done", true}});
  // The thread's curl handle kept the connection alive between the attempts.
  CHECK(server.connections() == 1);
}

TEST_CASE("http: 429 retries", "[http]") {
  TestServer server([](const HttpRequest&) { return HttpResponse{429, {}, "slow down", 0ms}; });
  const Outcome r = run({{"url", server.url("/")}});
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(r.data, Catch::Contains("429"));
}

TEST_CASE("http: 408 retries: the server gave up waiting for the request", "[http]") {
  TestServer server([](const HttpRequest&) { return HttpResponse{408, {}, "too slow", 0ms}; });
  const Outcome r = run({{"url", server.url("/")}});
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(r.data, Catch::Contains("returned 408"));
}

TEST_CASE("http: a redirect fails naming where it leads, or is followed when asked", "[http]") {
  TestServer server([&](const HttpRequest& req) {
    if (req.target == "/old") {
      return HttpResponse{301, {{"Location", "/new"}}, "", 0ms};
    }
    return json_response(200, {{"at", req.target}, {"method", req.method}, {"body", req.body}});
  });
  const Outcome r = run({{"url", server.url("/old")}});
  REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  CHECK_THAT(r.data, Catch::Contains("returned 301 to /new (set follow_redirects: true to "
                                     "follow it)"));
  const Outcome followed = run({{"url", server.url("/old")}, {"follow_redirects", true}});
  REQUIRE(followed.outcome == SAGA_OUTCOME_OK);
  CHECK(json::parse(followed.data)["body"] ==
        json({{"at", "/new"}, {"method", "GET"}, {"body", ""}}));
  // A POST stays a POST, with its body: a 2xx to a GET would pass for its success.
  const Outcome posted = run({{"url", server.url("/old")},
                              {"method", "POST"},
                              {"json", {{"n", 1}}},
                              {"follow_redirects", true}});
  REQUIRE(posted.outcome == SAGA_OUTCOME_OK);
  CHECK(json::parse(posted.data)["body"] ==
        json({{"at", "/new"}, {"method", "POST"}, {"body", "{\"n\":1}"}}));
  // The thread's handle does not keep following for a request that did not ask.
  const Outcome again = run({{"url", server.url("/old")}});
  CHECK(again.outcome == SAGA_OUTCOME_FAIL);
}

TEST_CASE("http: 404 fails", "[http]") {
  TestServer server([](const HttpRequest&) { return HttpResponse{404, {}, "no such order", 0ms}; });
  const Outcome r = run({{"url", server.url("/orders/8")}});
  REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  CHECK_THAT(r.data, Catch::Contains("/orders/8") && Catch::Contains("returned 404") &&
                         Catch::Contains("no such order"));
}

TEST_CASE("http: expect decides which statuses are success", "[http]") {
  TestServer server([](const HttpRequest& req) {
    return req.target == "/created" ? json_response(201, {{"id", 1}})
                                    : json_response(200, {{"id", 2}});
  });
  SECTION("200 when 201 is expected fails") {
    const Outcome r = run({{"url", server.url("/ok")}, {"expect", {201}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("returned 200"));
  }
  SECTION("201 when 201 is expected is ok") {
    const Outcome r = run({{"url", server.url("/created")}, {"expect", {200, 201}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_OK);
    CHECK(r.output().at("status") == 201);
  }
}

TEST_CASE("http: an expected error status is ok", "[http]") {
  TestServer server([](const HttpRequest&) { return json_response(404, {{"gone", true}}); });
  const Outcome r = run({{"url", server.url("/")}, {"expect", {404}}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output().at("status") == 404);
  CHECK(r.output().at("body") == json{{"gone", true}});
}

TEST_CASE("http: a response slower than the timeout retries", "[http]") {
  TestServer server([](const HttpRequest&) {
    HttpResponse resp = json_response(200, json::object());
    resp.delay = 3s;
    return resp;
  });
  const auto started = std::chrono::steady_clock::now();
  const Outcome r = run({{"url", server.url("/slow")}, {"timeout", "200ms"}});
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(r.data, Catch::Contains("/slow") && Catch::Contains("timed out after 200ms"));
  CHECK(took >= 190ms);
  CHECK(took < 1500ms);
}

TEST_CASE("http: the attempt's deadline bounds the request too", "[http]") {
  TestServer server([](const HttpRequest&) {
    HttpResponse resp = json_response(200, json::object());
    resp.delay = 3s;
    return resp;
  });
  AttemptSpec spec;
  spec.timeout = 300ms;
  const auto started = std::chrono::steady_clock::now();
  const Outcome r = run({{"url", server.url("/slow")}}, spec);
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(r.data, Catch::Contains("timed out"));
  CHECK(took < 1500ms);
}

TEST_CASE("http: cancellation stops the request", "[http]") {
  TestServer server([](const HttpRequest&) {
    HttpResponse resp = json_response(200, json::object());
    resp.delay = 5s;
    return resp;
  });
  std::atomic<bool> cancel{false};
  AttemptSpec spec;
  spec.cancel = &cancel;
  std::jthread canceller([&] {
    std::this_thread::sleep_for(200ms);
    cancel = true;
  });
  const auto started = std::chrono::steady_clock::now();
  const Outcome r = run({{"url", server.url("/slow")}}, spec);
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(r.data, Catch::Contains("cancelled"));
  // libcurl calls the progress callback about once a second while nothing moves.
  CHECK(took < 2500ms);
}

TEST_CASE("http: connection refused retries, naming the URL", "[http]") {
  // Bound but not listening: connecting gets a reset, and no other process can take the port.
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  const Outcome r = run({{"url", url}});
  close(fd);
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(r.data, Catch::Contains("GET " + url));
}

TEST_CASE("http: POST with json sends a JSON body and content type", "[http]") {
  TestServer server([](const HttpRequest&) { return json_response(201, {{"created", true}}); });
  const Outcome r = run({{"method", "post"},
                         {"url", server.url("/orders")},
                         {"headers", {{"X-Token", "t-1"}}},
                         {"json", {{"sku", "A-1"}, {"qty", 2}}}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output().at("status") == 201);
  const auto requests = server.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].method == "POST");
  CHECK(requests[0].target == "/orders");
  CHECK(requests[0].headers.at("content-type") == "application/json");
  CHECK(requests[0].headers.at("x-token") == "t-1");
  CHECK(json::parse(requests[0].body) == json{{"sku", "A-1"}, {"qty", 2}});
}

TEST_CASE("http: other methods carry a raw body and the caller's content type", "[http]") {
  TestServer server([](const HttpRequest&) { return HttpResponse{204, {}, "", 0ms}; });
  const Outcome r = run({{"method", "PUT"},
                         {"url", server.url("/doc")},
                         {"headers", {{"Content-Type", "text/csv"}}},
                         {"body", "a,b\n1,2\n"}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output().at("status") == 204);
  CHECK(r.output().at("body") == "");
  const auto requests = server.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].method == "PUT");
  CHECK(requests[0].headers.at("content-type") == "text/csv");
  CHECK(requests[0].body == "a,b\n1,2\n");
}

TEST_CASE("http: a compensation sends its request", "[http]") {
  TestServer server([](const HttpRequest&) { return HttpResponse{200, {}, "", 0ms}; });
  AttemptSpec spec;
  spec.phase = SAGA_PHASE_COMPENSATE;
  const Outcome r = run({{"method", "DELETE"}, {"url", server.url("/orders/7")}}, spec);
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  const auto requests = server.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].method == "DELETE");
  CHECK(requests[0].target == "/orders/7");
}

TEST_CASE("http: mistakes in the workflow fail for good", "[http]") {
  SECTION("no url") {
    const Outcome r = run(json::object());
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("url"));
  }
  SECTION("not http") {
    const Outcome r = run({{"url", "file:///etc/passwd"}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  }
  SECTION("no scheme") {
    const Outcome r = run({{"url", "127.0.0.1:1/x"}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK(r.data == "http: `url` must start with http:// or https://, not `127.0.0.1:1/x`");
  }
  SECTION("follow_redirects not a boolean") {
    const Outcome r = run({{"url", "http://127.0.0.1:1/"}, {"follow_redirects", "yes"}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  }
  SECTION("bad timeout") {
    const Outcome r = run({{"url", "http://127.0.0.1:1/"}, {"timeout", "soon"}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("timeout"));
  }
  SECTION("json and body") {
    const Outcome r = run({{"url", "http://127.0.0.1:1/"}, {"json", 1}, {"body", "x"}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  }
  SECTION("header injection") {
    const Outcome r = run({{"url", "http://127.0.0.1:1/"}, {"headers", {{"X-A", "v\r\nX-B: w"}}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  }
  SECTION("bad expect") {
    const Outcome r = run({{"url", "http://127.0.0.1:1/"}, {"expect", {"200"}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  }
}

TEST_CASE("http: a password in the URL stays out of errors", "[http]") {
  TestServer server([](const HttpRequest&) { return HttpResponse{403, {}, "", 0ms}; });
  std::string url = server.url("/private");
  url.insert(url.find("://") + 3, "user:hunter2@");
  const Outcome r = run({{"url", url}});
  REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  CHECK_THAT(r.data, Catch::Contains("/private") && !Catch::Contains("hunter2"));
}
