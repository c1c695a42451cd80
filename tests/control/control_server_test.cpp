#include "control/control_server.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

using namespace saga;
using json = nlohmann::json;

namespace {

// A ControlServer with `handler` on its own loop thread, listening in a fresh directory.
class TestServer {
 public:
  explicit TestServer(ControlServer::Handler handler) : handler_(std::move(handler)) {
    char dir[] = "/tmp/saga-control-test-XXXXXX";
    REQUIRE(::mkdtemp(dir));
    dir_ = dir;
    path_ = dir_ + "/s.sock";
    thread_ = std::thread([this] { run(); });
    while (!ready_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~TestServer() {
    uv_async_send(stop_);
    thread_.join();
    std::filesystem::remove_all(dir_);
  }
  const std::string& path() const { return path_; }

 private:
  void run() {
    uv_loop_t loop;
    uv_loop_init(&loop);
    ControlServer server(&loop, handler_);
    if (!server.listen(path_)) std::abort();  // Catch2 assertions belong to the test's thread
    stop_ = new uv_async_t;
    stop_->data = &server;
    uv_async_init(&loop, stop_, [](uv_async_t* a) {
      static_cast<ControlServer*>(a->data)->close();
      uv_close(reinterpret_cast<uv_handle_t*>(a),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    });
    ready_ = true;
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }

  ControlServer::Handler handler_;
  std::string dir_, path_;
  std::thread thread_;
  uv_async_t* stop_ = nullptr;
  std::atomic<bool> ready_{false};
};

// On "flood" it answers, then sends notifications until its backlog for the caller passes
// 256 KiB, then a "bye" notification, and closes the connection once that is written or after
// `grace_ms`, as a watch that falls behind is dropped.
class FloodServer {
 public:
  explicit FloodServer(uint64_t grace_ms)
      : grace_ms_(grace_ms), server_([this](ControlServer::Call call) { flood(call); }) {}
  const std::string& path() const { return server_.path(); }
  size_t peak_backlog() const { return peak_; }

 private:
  void flood(const ControlServer::Call& call) {
    ControlServer::reply(call.conn, call.id, json::object());
    std::string blob(64 << 10, 'x');
    while (ControlServer::backlog(call.conn).value_or(SIZE_MAX) <= (256u << 10)) {
      ControlServer::notify(call.conn, "data", {{"blob", blob}});
    }
    peak_ = ControlServer::backlog(call.conn).value_or(0);
    ControlServer::notify(call.conn, "bye", json::object());
    ControlServer::close_after_flush(call.conn, grace_ms_);
  }

  const uint64_t grace_ms_;
  std::atomic<size_t> peak_{0};
  TestServer server_;  // last: its thread calls flood()
};

int connect_to(const std::string& path,
               const std::string& request = R"({"jsonrpc":"2.0","id":1,"method":"flood"})"
                                            "\n") {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  return fd;
}

// Everything the server sent until it closed the connection.
std::string read_to_eof(int fd) {
  std::string all;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    all.append(buf, static_cast<size_t>(n));
  }
  return all;
}

// Reads until what came so far satisfies `done`, then closes the connection.
std::string read_until(int fd, const std::function<bool(const std::string&)>& done) {
  std::string got;
  char buf[4096];
  while (!done(got)) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    REQUIRE(n > 0);
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return got;
}

std::string last_line(const std::string& text) {
  if (text.empty()) return {};
  size_t end = text.back() == '\n' ? text.size() - 1 : text.size();
  size_t start = text.rfind('\n', end - 1);
  return text.substr(start == std::string::npos ? 0 : start + 1, end - (start + 1));
}

}  // namespace

TEST_CASE("a peer that reads gets what was queued and the last word, then the end") {
  FloodServer server(10'000);  // plenty of time to read it all, even under sanitizers
  int fd = connect_to(server.path());
  std::string all = read_to_eof(fd);
  ::close(fd);
  CHECK(server.peak_backlog() > (256u << 10));
  auto bye = json::parse(last_line(all), nullptr, false);
  REQUIRE(bye.is_object());
  CHECK(bye.value("method", "") == "bye");
}

TEST_CASE("a peer that does not read is cut off after the grace period") {
  FloodServer server(300);
  int fd = connect_to(server.path());
  std::this_thread::sleep_for(std::chrono::milliseconds(800));  // past the 300 ms grace
  auto began = std::chrono::steady_clock::now();
  std::string all = read_to_eof(fd);  // what the kernel held, then EOF: no hang
  ::close(fd);
  CHECK(std::chrono::steady_clock::now() - began < std::chrono::seconds(5));
  CHECK(all.find("\"bye\"") == std::string::npos);
}

TEST_CASE("a reply larger than the queue limit reaches a peer that reads it") {
  const std::string blob(12 << 20, 'x');  // past the 8 MiB that may wait for a peer
  TestServer server([&](ControlServer::Call call) {
    ControlServer::reply(call.conn, call.id, {{"blob", blob}});
  });
  int fd = connect_to(server.path(), R"({"jsonrpc":"2.0","id":1,"method":"big"})"
                                     "\n");
  std::string got;
  char buf[65536];
  while (got.find('\n') == std::string::npos) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    REQUIRE(n > 0);
    got.append(buf, static_cast<size_t>(n));
  }
  auto first = json::parse(got.substr(0, got.find('\n')));
  CHECK(first["id"] == 1);
  CHECK(first["result"]["blob"].get_ref<const std::string&>().size() == blob.size());
  // The connection goes on.
  const std::string next = R"({"jsonrpc":"2.0","id":2,"method":"big"})"
                           "\n";
  REQUIRE(::write(fd, next.data(), next.size()) == static_cast<ssize_t>(next.size()));
  got = read_until(fd, [](const std::string& got) { return got.find('\n') != std::string::npos; });
  CHECK(json::parse(got.substr(0, got.find('\n')))["id"] == 2);
}

TEST_CASE("a peer that sends requests and does not read their replies is cut off") {
  const std::string blob(3 << 20, 'x');
  TestServer server([&](ControlServer::Call call) {
    ControlServer::reply(call.conn, call.id, {{"blob", blob}});
  });
  std::string requests;
  for (int i = 1; i <= 20; ++i) {
    requests += R"({"jsonrpc":"2.0","id":)" + std::to_string(i) + R"(,"method":"big"})" + "\n";
  }
  int fd = connect_to(server.path(), requests);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  timeval five{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five, sizeof(five));
  char buf[65536];
  ssize_t n;
  size_t total = 0;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) total += static_cast<size_t>(n);
  ::close(fd);
  CHECK(n == 0);  // the server hung up; a timeout would be -1
  CHECK(total < 20 * blob.size());
}

TEST_CASE("a handler that throws gets its caller an internal error, and the server goes on") {
  TestServer server([](ControlServer::Call call) {
    if (call.method == "boom") throw std::runtime_error("unexpected");
    ControlServer::reply(call.conn, call.id, {{"method", call.method}});
  });
  int fd = connect_to(server.path(), R"({"jsonrpc":"2.0","id":7,"method":"boom"})"
                                     "\n"
                                     R"({"jsonrpc":"2.0","id":8,"method":"ping"})"
                                     "\n");
  const std::string got = read_until(
      fd, [](const std::string& got) { return std::count(got.begin(), got.end(), '\n') >= 2; });
  auto first = json::parse(got.substr(0, got.find('\n')));
  CHECK(first["id"] == 7);
  CHECK(first["error"]["code"] == -32603);
  CHECK(first["error"]["message"] == "boom failed inside sagad (unexpected); please report it");
  auto second = json::parse(last_line(got));
  CHECK(second["id"] == 8);
  CHECK(second["result"]["method"] == "ping");
}

TEST_CASE("notifications are carried out and never answered, errors included") {
  std::vector<std::string> seen;
  TestServer server([&](ControlServer::Call call) {
    seen.push_back(call.method);
    if (call.method == "boom") throw std::runtime_error("unexpected");
    if (call.method == "bad") return ControlServer::reply_error(call.conn, call.id, -32602, "no");
    ControlServer::reply(call.conn, call.id, {{"method", call.method}});
  });
  int fd = connect_to(server.path(), R"({"jsonrpc":"2.0","method":"ping"})"
                                     "\n"
                                     R"({"jsonrpc":"2.0","method":"bad"})"
                                     "\n"
                                     R"({"jsonrpc":"2.0","method":"boom"})"
                                     "\n"
                                     R"({"jsonrpc":"2.0","id":null,"method":"last"})"
                                     "\n");
  const std::string got = read_until(
      fd, [](const std::string& got) { return got.find("\"last\"") != std::string::npos; });
  // Only the last call, which has an id (null), is answered.
  REQUIRE(std::count(got.begin(), got.end(), '\n') == 1);
  auto reply = json::parse(got.substr(0, got.find('\n')));
  CHECK(reply["id"].is_null());
  CHECK(reply["result"]["method"] == "last");
  CHECK(seen == std::vector<std::string>{"ping", "bad", "boom", "last"});
}

TEST_CASE("a handler that throws after it answered does not answer twice") {
  TestServer server([](ControlServer::Call call) {
    ControlServer::reply(call.conn, call.id, {{"method", call.method}});
    if (call.method == "late") throw std::runtime_error("after the reply");
  });
  int fd = connect_to(server.path(), R"({"jsonrpc":"2.0","id":7,"method":"late"})"
                                     "\n"
                                     R"({"jsonrpc":"2.0","id":8,"method":"ping"})"
                                     "\n");
  const std::string got = read_until(
      fd, [](const std::string& got) { return got.find("\"id\":8") != std::string::npos; });
  REQUIRE(std::count(got.begin(), got.end(), '\n') == 2);
  auto first = json::parse(got.substr(0, got.find('\n')));
  CHECK(first["id"] == 7);
  CHECK(first["result"]["method"] == "late");
  CHECK(json::parse(last_line(got))["id"] == 8);
}
