// A blocking client for the control socket, used by sagactl, saga-bench and tests.
#pragma once

#include <expected>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "control/protocol.hpp"

namespace saga::rpc {

struct ClientError {
  enum class Kind { transport, remote } kind = Kind::transport;
  int code = 0;  // the JSON-RPC error code when remote
  std::string message;
};

template <class T>
using ClientResult = std::expected<T, ClientError>;

class Client {
 public:
  // Connects to the daemon's Unix socket; a transport error names the path.
  static ClientResult<Client> connect(const std::string& socket_path);

  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  // Sends a request and waits for its response; notifications that arrive first are skipped.
  ClientResult<json> call(const std::string& method, json params = json::object());

  // Sends a request without waiting (for subscriptions).
  ClientResult<void> send(const std::string& method, json params = json::object());
  // Reads the next message (a response or a notification); transport error at EOF.
  ClientResult<json> read_message();

 private:
  explicit Client(int fd) : fd_(fd) {}
  int fd_ = -1;
  int64_t next_id_ = 1;
  LineBuffer buffer_{size_t{1} << 30};  // an instance holds step outputs of up to 32 MiB each
  std::vector<std::string> lines_;
  size_t line_pos_ = 0;
};

}  // namespace saga::rpc
