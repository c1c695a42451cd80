// The control socket: JSON-RPC 2.0 over a Unix socket, one JSON object per line (DESIGN §7).
// Loop thread only. Connections are owned by the server; callers keep weak references so that
// a reply sent after the client went away is dropped.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "control/protocol.hpp"
#include "engine/error.hpp"

namespace saga {

class ControlServer {
 public:
  struct Peer {
    uint32_t uid = 0;
    uint32_t gid = 0;
    int32_t pid = 0;
  };
  class Connection;
  struct Call {
    std::weak_ptr<Connection> conn;
    nlohmann::json id;
    std::string method;
    nlohmann::json params;
    Peer peer;
  };
  using Handler = std::function<void(Call)>;

  // `loop` must outlive the server.
  ControlServer(uv_loop_t* loop, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds the socket (mode 0660). A socket file nobody answers on is replaced; one a live
  // process answers on is an error naming it.
  Result<void> listen(const std::string& path);
  // What listen() would refuse about `path` before trying (too long, no directory, a file that
  // is not a socket): checked at startup, before the work of recovery.
  static Result<void> check_path(const std::string& path);
  // Stops accepting, closes every connection and removes the socket file.
  void close();

  static void reply(const std::weak_ptr<Connection>& conn, const nlohmann::json& id,
                    nlohmann::json result);
  // A reply whose result is already JSON text: saves a parse and a dump of large results.
  static void reply_text(const std::weak_ptr<Connection>& conn, const nlohmann::json& id,
                         std::string_view result_text);
  static void reply_error(const std::weak_ptr<Connection>& conn, const nlohmann::json& id, int code,
                          std::string_view message);
  // Sends a notification; false when the connection is gone or was dropped as too slow.
  static bool notify(const std::weak_ptr<Connection>& conn, std::string_view method,
                     nlohmann::json params);
  // Bytes queued for the peer and not yet taken by the kernel; nullopt when the connection is
  // gone. Subscriptions use it to drop a peer that falls behind before the hard limit does.
  static std::optional<size_t> backlog(const std::weak_ptr<Connection>& conn);
  // Stops reading and closes the connection once what is queued has been written, or after
  // `grace_ms` if the peer does not read it by then. Never blocks the loop.
  static void close_after_flush(const std::weak_ptr<Connection>& conn, uint64_t grace_ms);

 private:
  friend class Connection;
  static void on_connection(uv_stream_t* server, int status);
  void forget(Connection* conn);

  uv_loop_t* loop_;
  Handler handler_;
  uv_pipe_t* pipe_ = nullptr;  // freed in its close callback
  std::string path_;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections_;
};

}  // namespace saga
