#include "control/control_server.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <saga/json_depth.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace saga {

namespace {

// A client that does not read its replies is cut off once more than this waits for it when
// another reply comes: one reply, whatever its size, is always queued.
constexpr size_t kMaxQueuedBytes = 8 << 20;

bool someone_answers(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool alive = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return alive;
}

}  // namespace

class ControlServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(ControlServer& server) : server_(&server), pipe_(new uv_pipe_t) {
    uv_pipe_init(server.loop_, pipe_, 0);
    pipe_->data = this;
  }

  bool accept(uv_stream_t* listener) {
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(pipe_)) != 0) return false;
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(pipe_), &fd) == 0) {
      ucred cred{};
      socklen_t len = sizeof(cred);
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        peer_ = {cred.uid, cred.gid, cred.pid};
      }
    }
    // Every read lands in the same buffer of the loop's thread: on_data copies what it keeps
    // before the next read. A buffer allocated per read was 64 KiB, and freeing a chunk that
    // size makes glibc consolidate its fast bins, at every request.
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(pipe_),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          thread_local std::array<char, 64 << 10> reads;
          *buf = uv_buf_init(reads.data(), static_cast<unsigned>(reads.size()));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          auto* self = static_cast<Connection*>(s->data);
          if (self && n > 0) self->on_data(std::string_view(buf->base, static_cast<size_t>(n)));
          if (self && n < 0) self->shutdown();
        });
    return true;
  }

  void send(const nlohmann::json& message) {
    if (closing_) return;
    // Text from elsewhere (a file name, a step's error) may hold bytes that are not UTF-8: they
    // go out as U+FFFD rather than failing the reply.
    send_line(message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }

  // Sends one message that is already JSON text (without its newline).
  void send_line(std::string line) {
    if (closing_) return;
    line += '\n';
    // Most replies fit in the socket buffer at once: written here, they need no write request,
    // and libuv no change of what it polls for when the request completes (an epoll_ctl each).
    if (queued_ == 0) {
      uv_buf_t buf = uv_buf_init(line.data(), static_cast<unsigned>(line.size()));
      int n = uv_try_write(reinterpret_cast<uv_stream_t*>(pipe_), &buf, 1);
      if (n == static_cast<int>(line.size())) {
        if (close_after_write_) shutdown();
        return;
      }
      if (n < 0 && n != UV_EAGAIN) {
        shutdown();  // the peer is gone
        return;
      }
      if (n > 0) line.erase(0, static_cast<size_t>(n));
    }
    auto* text = new std::string(std::move(line));
    // What the kernel took already does not count: a burst to a peer that keeps reading is fine,
    // and so is one large reply (a listing of large instances) to a peer that reads it.
    if (backlog() > kMaxQueuedBytes) {
      delete text;
      spdlog::warn("control: a client that does not read its replies was disconnected");
      shutdown();
      return;
    }
    queued_ += text->size();
    auto* req = new uv_write_t;
    req->data = text;
    uv_buf_t buf = uv_buf_init(text->data(), static_cast<unsigned>(text->size()));
    // The shared_ptr inside keeps the connection alive until the write completes.
    struct Pending {
      std::string* text;
      std::shared_ptr<Connection> self;
    };
    req->data = new Pending{text, shared_from_this()};
    int rc = uv_write(req, reinterpret_cast<uv_stream_t*>(pipe_), &buf, 1, [](uv_write_t* r, int) {
      auto* p = static_cast<Pending*>(r->data);
      p->self->queued_ -= p->text->size();
      if (p->self->close_after_write_ && p->self->queued_ == 0) p->self->shutdown();
      delete p->text;
      delete p;
      delete r;
    });
    if (rc != 0) {
      auto* p = static_cast<Pending*>(req->data);
      queued_ -= text->size();
      delete p->text;
      delete p;
      delete req;
      shutdown();
    }
  }

  void shutdown() {
    if (closing_) return;
    closing_ = true;
    if (grace_) {
      uv_close(reinterpret_cast<uv_handle_t*>(grace_), [](uv_handle_t* h) {
        delete static_cast<std::weak_ptr<Connection>*>(h->data);
        delete reinterpret_cast<uv_timer_t*>(h);
      });
      grace_ = nullptr;
    }
    pipe_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(pipe_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    if (server_) server_->forget(this);
  }

  void detach() { server_ = nullptr; }
  bool closing() const { return closing_; }
  // What libuv holds for the peer beyond what the kernel took; writes that completed at once
  // are not counted, so a peer that keeps reading never shows a backlog.
  size_t backlog() const { return reinterpret_cast<const uv_stream_t*>(pipe_)->write_queue_size; }

  void close_after_flush(uint64_t grace_ms) {
    if (closing_ || close_after_write_) return;
    close_after_write_ = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(pipe_));
    if (queued_ == 0) {
      shutdown();
      return;
    }
    // A peer that never reads would keep its queue (bounded, but still) forever.
    grace_ = new uv_timer_t;
    uv_timer_init(pipe_->loop, grace_);
    grace_->data = new std::weak_ptr<Connection>(weak_from_this());
    uv_timer_start(
        grace_,
        [](uv_timer_t* t) {
          auto* weak = static_cast<std::weak_ptr<Connection>*>(t->data);
          if (auto self = weak->lock()) self->shutdown();
        },
        grace_ms, 0);
  }

 private:
  void on_data(std::string_view data) {
    auto keep = shared_from_this();  // a handler may close the connection
    std::vector<std::string> lines;
    bool ok = buffer_.feed(data, lines);
    for (auto& line : lines) {
      if (closing_ || close_after_write_) return;
      handle_line(line);
    }
    if (!ok && !closing_) {
      send(rpc::make_error(nullptr, rpc::kInvalidRequest,
                           "request larger than 1 MiB; the connection is closed"));
      close_after_write_ = true;
      uv_read_stop(reinterpret_cast<uv_stream_t*>(pipe_));
      if (queued_ == 0) shutdown();
    }
  }

  void handle_line(const std::string& line) {
    if (line.find_first_not_of(" \t") == std::string::npos) return;
    if (saga::json_nests_deeper_than(line)) {
      send(rpc::make_error(nullptr, rpc::kInvalidRequest,
                           "the request nests arrays and objects more than " +
                               std::to_string(saga::kMaxJsonDepth) + " levels deep; flatten it"));
      return;
    }
    auto message = nlohmann::json::parse(line, nullptr, false);
    if (message.is_discarded()) {
      send(rpc::make_error(nullptr, rpc::kParseError, "parse error: the line is not valid JSON"));
      return;
    }
    int code = 0;
    std::string error;
    auto request = rpc::parse_request(message, code, error);
    if (!request) {
      nlohmann::json id = message.is_object() ? message.value("id", nlohmann::json()) : nullptr;
      send(rpc::make_error(id, code, error));
      return;
    }
    if (!server_) return;
    nlohmann::json id = request->id;
    // Known methods are short; another name is answered by the handler and only named here.
    std::string method = request->method.substr(0, 64);
    handling_ = &id;
    answered_ = false;
    try {
      server_->handler_(Call{weak_from_this(), request->id, std::move(request->method),
                             std::move(request->params), peer_});
    } catch (const std::exception& e) {
      // A request that a handler did not expect is logged and answered, unless the handler had
      // answered it already; the daemon goes on.
      spdlog::error("{} request failed: {}", method, e.what());
      if (!answered_ && !rpc::is_notification(id)) {
        send(rpc::make_error(id, rpc::kInternalError,
                             method + " failed inside sagad (" + e.what() + "); please report it"));
      }
    }
    handling_ = nullptr;
  }

 public:
  // Called with the id of every reply: tells whether the request being handled was answered.
  void answering(const nlohmann::json& id) {
    if (handling_ && *handling_ == id) answered_ = true;
  }

 private:
  ControlServer* server_;
  uv_pipe_t* pipe_;
  rpc::LineBuffer buffer_;
  Peer peer_;
  size_t queued_ = 0;
  uv_timer_t* grace_ = nullptr;  // close_after_flush's deadline; freed in its close callback
  bool closing_ = false;
  bool close_after_write_ = false;
  const nlohmann::json* handling_ = nullptr;  // the id of the request in its handler, if any
  bool answered_ = false;
};

ControlServer::ControlServer(uv_loop_t* loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
  close();
}

Result<void> ControlServer::check_path(const std::string& path) {
  sockaddr_un probe{};
  if (path.size() >= sizeof(probe.sun_path)) {
    return make_error(ErrorCode::invalid_argument,
                      "socket path " + path + " is too long (at most " +
                          std::to_string(sizeof(probe.sun_path) - 1) + " bytes)");
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  struct stat st {};
  if (!dir.empty() && (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
    return make_error(ErrorCode::not_found, "the directory of socket " + path +
                                                " does not exist; create it or give sagad "
                                                "another --socket");
  }
  if (::lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
    // Only a socket left by a crash is ours to replace: anything else is someone's file.
    return make_error(ErrorCode::already_exists,
                      path +
                          " exists and is not a socket; remove it or give sagad another "
                          "--socket");
  }
  return {};
}

Result<void> ControlServer::listen(const std::string& path) {
  if (auto usable = check_path(path); !usable) return usable;
  if (::access(path.c_str(), F_OK) == 0) {  // a socket, check_path says
    if (someone_answers(path)) {
      return make_error(ErrorCode::already_exists,
                        "another sagad is already listening on " + path +
                            "; stop it or give this one another --socket");
    }
    ::unlink(path.c_str());  // left behind by a process that died
  }
  pipe_ = new uv_pipe_t;
  uv_pipe_init(loop_, pipe_, 0);
  pipe_->data = this;
  int rc = uv_pipe_bind(pipe_, path.c_str());
  // As many pending connections as the kernel allows (net.core.somaxconn), as systemd's
  // sockets do: a burst of clients queues instead of being refused with EAGAIN.
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(pipe_), SOMAXCONN, &on_connection);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(pipe_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    pipe_ = nullptr;
    return make_error(ErrorCode::unavailable, "cannot listen on " + path + ": " + uv_strerror(rc));
  }
  ::chmod(path.c_str(), 0660);
  path_ = path;
  return {};
}

void ControlServer::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<ControlServer*>(listener->data);
  if (status != 0 || !self) return;
  auto conn = std::make_shared<Connection>(*self);
  if (!conn->accept(listener)) {
    conn->shutdown();
    return;
  }
  self->connections_[conn.get()] = conn;
}

void ControlServer::forget(Connection* conn) {
  connections_.erase(conn);
}

void ControlServer::close() {
  if (pipe_) {
    pipe_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(pipe_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    pipe_ = nullptr;
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  auto conns = std::move(connections_);
  connections_.clear();
  for (auto& [ptr, conn] : conns) {
    conn->detach();
    conn->shutdown();
  }
}

void ControlServer::reply(const std::weak_ptr<Connection>& conn, const nlohmann::json& id,
                          nlohmann::json result) {
  if (rpc::is_notification(id)) return;
  if (auto c = conn.lock()) {
    c->answering(id);
    c->send(rpc::make_result(id, std::move(result)));
  }
}

void ControlServer::reply_text(const std::weak_ptr<Connection>& conn, const nlohmann::json& id,
                               std::string_view result_text) {
  auto c = conn.lock();
  if (!c || rpc::is_notification(id)) return;
  c->answering(id);
  std::string line = R"({"jsonrpc":"2.0","id":)";
  line += id.dump();
  line += R"(,"result":)";
  line += result_text;
  line += '}';
  c->send_line(std::move(line));
}

void ControlServer::reply_error(const std::weak_ptr<Connection>& conn, const nlohmann::json& id,
                                int code, std::string_view message) {
  if (rpc::is_notification(id)) return;
  if (auto c = conn.lock()) {
    c->answering(id);
    c->send(rpc::make_error(id, code, message));
  }
}

bool ControlServer::notify(const std::weak_ptr<Connection>& conn, std::string_view method,
                           nlohmann::json params) {
  auto c = conn.lock();
  if (!c || c->closing()) return false;
  c->send(rpc::make_notification(method, std::move(params)));
  return !c->closing();
}

std::optional<size_t> ControlServer::backlog(const std::weak_ptr<Connection>& conn) {
  auto c = conn.lock();
  if (!c || c->closing()) return std::nullopt;
  return c->backlog();
}

void ControlServer::close_after_flush(const std::weak_ptr<Connection>& conn, uint64_t grace_ms) {
  if (auto c = conn.lock()) c->close_after_flush(grace_ms);
}

}  // namespace saga
