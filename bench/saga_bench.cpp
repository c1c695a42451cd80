// saga-bench: a closed-loop load generator that speaks JSON-RPC to sagad's socket.
//
// C clients, each on its own connection, take the next index, start one instance with
// `wait: true` and record the latency from the start call to the result, until N instances
// have been started (the same loop as ../shared/peers/common/bench.mjs). All C connections run
// on one libuv loop in one thread, so that the load generator takes little of the CPU it
// shares with sagad; its own CPU per instance is reported beside sagad's.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "control/client.hpp"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank, as the peers' bench.mjs computes it.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

long rss_kib(int64_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// CPU time of sagad's threads by role, in clock ticks: the loop thread keeps the process's name,
// the others are named by sagad ("saga-journal", "saga-worker") or by RocksDB ("rocksdb:...").
std::map<std::string, uint64_t> cpu_ticks_by_role(int64_t pid) {
  std::map<std::string, uint64_t> ticks;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::string comm = stat.substr(open + 1, close - open - 1);
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    uint64_t utime = 0, stime = 0;
    // Fields 3..13 precede utime (14) and stime (15).
    for (int i = 3; i <= 13 && rest >> field; ++i) {
    }
    rest >> utime >> stime;
    std::string role = comm == "saga-journal"                          ? "journal"
                       : comm == "saga-worker"                         ? "workers"
                       : comm.starts_with("rocksdb:")                  ? "rocksdb"
                       : task.path().filename() == std::to_string(pid) ? "loop"
                                                                       : "other";
    ticks[role] += utime + stime;
  }
  return ticks;
}

std::string cpu_breakdown(const json& cpu_us) {
  std::string text = fmt::format("{:.0f}", cpu_us.value("total", 0.0));
  std::string parts;
  for (const auto& [role, us] : cpu_us.items()) {
    if (role == "total") continue;
    parts += fmt::format("{}{} {:.0f}", parts.empty() ? "" : ", ", role, us.get<double>());
  }
  return parts.empty() ? text : text + " (" + parts + ")";
}

// What a reply says: whether it has a `result`, `result.instance.state` (absent for a start that
// does not wait) and `error.message`.
struct Reply {
  bool has_result = false;
  std::string state;
  std::string error;
};

// Walks a JSON text to the values at a few paths of object keys, skipping everything else
// without building it: a wait reply carries the whole instance, and a full parse of it was most
// of this process's CPU, which it shares with sagad. Returns false where the text is not JSON as
// far as it was read; a reply it cannot read is then parsed in full, to say why.
class ReplyScanner {
 public:
  explicit ReplyScanner(std::string_view text) : text_(text) {}

  bool read(Reply& reply) {
    reply_ = &reply;
    if (!value(0, Where::top)) return false;
    space();
    return at_ == text_.size();
  }

 private:
  enum class Where { top, result, instance, error, other };

  bool value(int depth, Where where) {
    space();
    if (at_ >= text_.size() || depth > 64) return false;
    char c = text_[at_];
    if (c == '{') return object(depth, where);
    if (c == '[') {
      ++at_;
      space();
      if (peek(']')) return ++at_, true;
      for (;;) {
        if (!value(depth + 1, Where::other)) return false;
        auto next = more(']');
        if (!next) return false;
        if (!*next) return true;
      }
    }
    if (c == '"') return string().has_value();
    size_t start = at_;
    while (at_ < text_.size() &&
           std::string_view(",}] \t\r\n").find(text_[at_]) == std::string_view::npos) {
      ++at_;
    }
    std::string_view word = text_.substr(start, at_ - start);
    if (word == "true" || word == "false" || word == "null") return true;
    double number = 0;
    auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), number);
    return ec == std::errc() && end == word.data() + word.size();
  }

  bool object(int depth, Where where) {
    ++at_;
    space();
    if (peek('}')) return ++at_, true;
    for (;;) {
      space();
      auto key = string();
      if (!key) return false;
      space();
      if (!peek(':')) return false;
      ++at_;
      Where inner = Where::other;
      if (where == Where::top && *key == "result") {
        reply_->has_result = true;
        inner = Where::result;
      } else if (where == Where::top && *key == "error") {
        inner = Where::error;
      } else if (where == Where::result && *key == "instance") {
        inner = Where::instance;
      }
      space();
      bool wanted = (where == Where::instance && *key == "state") ||
                    (where == Where::error && *key == "message");
      if (wanted && peek('"')) {
        auto text = string();
        if (!text) return false;
        (where == Where::instance ? reply_->state : reply_->error) = std::string(*text);
      } else if (!value(depth + 1, inner)) {
        return false;
      }
      auto next = more('}');
      if (!next) return false;
      if (!*next) return true;
    }
  }

  // After a member or an element: true past a comma (another follows), false past `close` (the
  // end), nullopt at anything else.
  std::optional<bool> more(char close) {
    space();
    if (peek(',')) return ++at_, true;
    if (peek(close)) return ++at_, false;
    return std::nullopt;
  }

  // A string's text as it stands, escapes and all: the names and states compared here have none.
  std::optional<std::string_view> string() {
    if (!peek('"')) return std::nullopt;
    size_t start = ++at_;
    for (; at_ < text_.size(); ++at_) {
      if (text_[at_] == '\\') {
        ++at_;
      } else if (text_[at_] == '"') {
        return text_.substr(start, at_++ - start);
      }
    }
    return std::nullopt;
  }

  void space() {
    while (at_ < text_.size() &&
           (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\r' || text_[at_] == '\n')) {
      ++at_;
    }
  }
  bool peek(char c) const { return at_ < text_.size() && text_[at_] == c; }

  std::string_view text_;
  size_t at_ = 0;
  Reply* reply_ = nullptr;
};

// The reply as above; one the scanner cannot read is parsed in full (rare: it is an error).
Reply read_reply(std::string_view line) {
  Reply reply;
  if (ReplyScanner(line).read(reply)) return reply;
  reply = {};
  auto doc = json::parse(line, nullptr, false);
  if (doc.is_discarded()) {
    reply.error = "unreadable reply: " + std::string(line.substr(0, 200));
    return reply;
  }
  reply.has_result = doc.contains("result");
  if (reply.has_result) {
    const json& result = doc["result"];
    if (result.is_object() && result.contains("instance") && result["instance"].is_object()) {
      reply.state = result["instance"].value("state", "");
    }
  } else if (doc.contains("error") && doc["error"].is_object()) {
    reply.error = doc["error"].value("message", "");
  }
  return reply;
}

// One closed-loop run: C connections on one libuv loop in this thread (as the peers' bench.mjs
// drives them from one event loop), each starting an instance, waiting for its reply, then
// starting the next, until `total` have been started.
class Run {
 public:
  Run(const std::string& socket, std::string request_head, size_t total, size_t concurrency,
      std::string expect, bool no_wait, std::vector<double>* latencies)
      : head_(std::move(request_head)),
        total_(total),
        expect_(std::move(expect)),
        no_wait_(no_wait),
        latencies_(latencies) {
    uv_loop_init(&loop_);
    for (size_t c = 0; c < std::min(concurrency, total); ++c) {
      auto conn = std::make_unique<Conn>();
      conn->run = this;
      uv_pipe_init(&loop_, &conn->pipe, 0);
      conn->pipe.data = conn.get();
      conn->connect.data = conn.get();
      uv_pipe_connect(&conn->connect, &conn->pipe, socket.c_str(), [](uv_connect_t* req, int st) {
        auto* conn = static_cast<Conn*>(req->data);
        if (st < 0) return conn->run->fail(*conn, std::string("connect: ") + uv_strerror(st));
        uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->pipe), alloc, on_read);
        conn->run->send_next(*conn);
      });
      conns_.push_back(std::move(conn));
    }
  }
  ~Run() { uv_loop_close(&loop_); }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  void run() { uv_run(&loop_, UV_RUN_DEFAULT); }
  size_t errors() const { return errors_; }
  const std::string& first_error() const { return first_error_; }

 private:
  struct Conn {
    Run* run = nullptr;
    uv_pipe_t pipe{};
    uv_connect_t connect{};
    std::string in;  // bytes read that do not yet end a line
    Clock::time_point sent;
    uint64_t next_id = 1;
    bool closed = false;
  };
  struct Write {
    uv_write_t req{};
    std::string data;
  };

  static void alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* conn = static_cast<Conn*>(h->data);
    *buf = uv_buf_init(conn->run->buf_, sizeof(conn->run->buf_));
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* conn = static_cast<Conn*>(s->data);
    Run* run = conn->run;
    if (n < 0)
      return run->fail(*conn, n == UV_EOF ? "sagad closed the connection" : uv_strerror(n));
    conn->in.append(buf->base, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t end; !conn->closed && (end = conn->in.find('\n', start)) != std::string::npos;
         start = end + 1) {
      run->on_reply(*conn, std::string_view(conn->in).substr(start, end - start));
    }
    if (!conn->closed) conn->in.erase(0, start);
  }

  void on_reply(Conn& conn, std::string_view line) {
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - conn.sent).count();
    Reply reply = read_reply(line);
    std::string state = reply.has_result && no_wait_ ? expect_ : reply.state;
    if (!reply.has_result || state != expect_) {
      note_error(reply.has_result ? "an instance ended " + state : reply.error);
    } else if (latencies_) {
      latencies_->push_back(ms);
    }
    send_next(conn);
  }

  void send_next(Conn& conn) {
    if (next_ >= total_) return close(conn);
    ++next_;
    std::string data = head_ + std::to_string(conn.next_id++) + "}\n";
    conn.sent = Clock::now();
    // A request fits in the socket buffer: written at once, it needs no write request (nor, in
    // libuv, an epoll_ctl when that request completes), which the load generator's own CPU
    // would take from sagad's on a small machine.
    uv_buf_t now = uv_buf_init(data.data(), static_cast<unsigned>(data.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&conn.pipe), &now, 1);
    if (n == static_cast<int>(data.size())) return;
    if (n < 0 && n != UV_EAGAIN) return fail(conn, std::string("write: ") + uv_strerror(n));
    auto* w = new Write;
    w->data = data.substr(n > 0 ? static_cast<size_t>(n) : 0);
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&conn.pipe), &buf, 1,
                      [](uv_write_t* req, int) { delete static_cast<Write*>(req->data); });
    if (rc < 0) {
      delete w;
      fail(conn, std::string("write: ") + uv_strerror(rc));
    }
  }

  void note_error(const std::string& message) {
    if (errors_++ == 0) first_error_ = message;
  }
  // A connection that broke counts once and starts no more instances.
  void fail(Conn& conn, const std::string& message) {
    note_error(message);
    close(conn);
  }
  void close(Conn& conn) {
    if (conn.closed) return;
    conn.closed = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&conn.pipe), nullptr);
  }

  uv_loop_t loop_{};
  std::vector<std::unique_ptr<Conn>> conns_;
  std::string head_;
  size_t total_;
  size_t next_ = 0;
  std::string expect_;
  bool no_wait_;
  std::vector<double>* latencies_;
  size_t errors_ = 0;
  std::string first_error_;
  char buf_[64 * 1024];
};

double cpu_seconds_of_this_process() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"saga-bench: closed-loop load against sagad"};
  std::string socket = "/run/saga/sagad.sock";
  std::string workflow;
  std::string input_text = "{}";
  std::string expect = "completed";
  size_t count = 1000;
  size_t concurrency = 32;
  size_t warmup = 0;
  bool as_json = false;
  app.add_option("--socket", socket, "sagad's control socket")->capture_default_str();
  app.add_option("--workflow", workflow, "workflow to start")->required();
  app.add_option("--count", count, "instances to start (measured)")->capture_default_str();
  app.add_option("--concurrency", concurrency, "concurrent clients")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--warmup", warmup, "instances started first and not measured");
  app.add_option("--input", input_text, "instance input (a JSON object)");
  app.add_option("--expect", expect, "the state every instance must end in")->capture_default_str();
  app.add_flag("--json", as_json, "print one JSON object");
  bool no_wait = false;
  app.add_flag("--no-wait", no_wait,
               "start the instances without waiting for them to end (to build up instances in "
               "flight); latency is then that of the start call");
  CLI11_PARSE(app, argc, argv);

  json input = json::parse(input_text, nullptr, false);
  if (input.is_discarded() || !input.is_object()) {
    std::cerr << "saga-bench: --input must be a JSON object\n";
    return 2;
  }

  auto probe = saga::rpc::Client::connect(socket);
  if (!probe) {
    std::cerr << "saga-bench: " << probe.error().message << "\n";
    return 3;
  }
  auto ping = probe->call("ping");
  if (!ping) {
    std::cerr << "saga-bench: ping: " << ping.error().message << "\n";
    return 3;
  }
  const int64_t pid = (*ping).value("pid", int64_t{0});

  // Every request is this text, then its id and "}".
  std::string head =
      json{{"jsonrpc", "2.0"},
           {"method", "start"},
           {"params", {{"workflow", workflow}, {"input", input}, {"wait", !no_wait}}}}
          .dump();
  head.back() = ',';
  head += "\"id\":";
  size_t errors = 0;
  std::string first_error;
  auto run = [&](size_t total, std::vector<double>* latencies) {
    Run r(socket, head, total, concurrency, expect, no_wait, latencies);
    r.run();
    if (errors == 0 && r.errors() > 0) first_error = r.first_error();
    errors += r.errors();
  };

  if (warmup > 0) run(warmup, nullptr);
  errors = 0;
  first_error.clear();
  std::vector<double> latencies;
  latencies.reserve(count);
  auto journal_of = [&probe]() {
    auto s = probe->call("stats");
    return s ? (*s).value("journal", json::object()) : json::object();
  };
  const json journal_before = journal_of();
  auto cpu_before = pid > 0 ? cpu_ticks_by_role(pid) : std::map<std::string, uint64_t>{};
  const double bench_cpu_before = cpu_seconds_of_this_process();
  auto t0 = Clock::now();
  run(count, &latencies);
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const double bench_cpu_us = (cpu_seconds_of_this_process() - bench_cpu_before) * 1e6 /
                              static_cast<double>(std::max<size_t>(count, 1));
  auto cpu_after = pid > 0 ? cpu_ticks_by_role(pid) : std::map<std::string, uint64_t>{};
  // sagad's CPU per measured instance, in microseconds, by thread role.
  json cpu_us = json::object();
  const double us_per_tick = 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  double cpu_total = 0;
  for (const auto& [role, after] : cpu_after) {
    auto it = cpu_before.find(role);
    double us = static_cast<double>(after - (it == cpu_before.end() ? 0 : it->second)) *
                us_per_tick / static_cast<double>(std::max<size_t>(count, 1));
    cpu_us[role] = us;
    cpu_total += us;
  }
  cpu_us["total"] = cpu_total;
  long rss = pid > 0 ? rss_kib(pid) : -1;
  std::sort(latencies.begin(), latencies.end());

  const json journal = journal_of();
  // Transitions per commit during the measured run (the daemon's own figure is since it started).
  const double commits = journal.value("commits", 0.0) - journal_before.value("commits", 0.0);
  const double writes = journal.value("writes", 0.0) - journal_before.value("writes", 0.0);
  const double run_batch = commits > 0 ? writes / commits : 0.0;

  json result = {
      {"workflow", workflow},
      {"count", count},
      {"concurrency", concurrency},
      {"errors", errors},
      {"instances_per_s", static_cast<double>(latencies.size()) / seconds},
      {"p50_ms", percentile(latencies, 50)},
      {"p90_ms", percentile(latencies, 90)},
      {"p99_ms", percentile(latencies, 99)},
      {"sagad_rss_kib", rss},
      {"journal_avg_batch", run_batch},
      {"journal_commit_p50_ms", journal.value("commit_ms", json::object()).value("p50", 0.0)},
      {"sagad_cpu_us_per_instance", cpu_us},
      {"bench_cpu_us_per_instance", bench_cpu_us}};
  if (as_json) {
    std::cout << result.dump() << "\n";
  } else {
    std::cout << fmt::format(
        "{} C={} N={}: {:.1f} instances/s, p50 {:.2f} ms, p90 {:.2f} ms, p99 {:.2f} ms, errors {}, "
        "sagad RSS {:.1f} MiB, journal avg batch {:.1f}, sagad CPU per instance {} us\n",
        workflow, concurrency, count, result["instances_per_s"].get<double>(),
        result["p50_ms"].get<double>(), result["p90_ms"].get<double>(),
        result["p99_ms"].get<double>(), errors, static_cast<double>(rss) / 1024.0,
        result["journal_avg_batch"].get<double>(), cpu_breakdown(cpu_us));
  }
  if (errors > 0) {
    std::cerr << "saga-bench: " << errors << " instances did not end " << expect
              << " (first: " << first_error << ")\n";
    return 1;
  }
  return 0;
}
