#include "control/client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace saga::rpc {

namespace {

ClientError transport(std::string message) {
  return ClientError{ClientError::Kind::transport, 0, std::move(message)};
}

}  // namespace

ClientResult<Client> Client::connect(const std::string& socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return std::unexpected(transport("socket path " + socket_path + " is too long"));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::unexpected(transport(std::string("socket: ") + std::strerror(errno)));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    return std::unexpected(transport("cannot reach sagad at " + socket_path + ": " +
                                     std::strerror(err) + " (is sagad running?)"));
  }
  return Client(fd);
}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      next_id_(other.next_id_),
      buffer_(std::move(other.buffer_)),
      lines_(std::move(other.lines_)),
      line_pos_(other.line_pos_) {}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    next_id_ = other.next_id_;
    buffer_ = std::move(other.buffer_);
    lines_ = std::move(other.lines_);
    line_pos_ = other.line_pos_;
  }
  return *this;
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

ClientResult<void> Client::send(const std::string& method, json params) {
  std::string line;
  try {
    line = make_request(next_id_++, method, std::move(params)).dump() + "\n";
  } catch (const json::type_error&) {
    // Answered as sagad answers invalid parameters, without sending anything.
    return std::unexpected(ClientError{ClientError::Kind::remote, kInvalidParams,
                                       "the request holds text that is not UTF-8; pass names, "
                                       "ids and input as UTF-8"});
  }
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(
          transport(std::string("lost the connection to sagad: ") + std::strerror(errno)));
    }
    off += static_cast<size_t>(n);
  }
  return {};
}

ClientResult<json> Client::read_message() {
  while (line_pos_ >= lines_.size()) {
    lines_.clear();
    line_pos_ = 0;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return std::unexpected(transport("sagad closed the connection before answering"));
    }
    if (!buffer_.feed(std::string_view(buf, static_cast<size_t>(n)), lines_)) {
      return std::unexpected(transport("sagad sent a line that is too long"));
    }
  }
  json message = json::parse(lines_[line_pos_++], nullptr, false);
  if (message.is_discarded()) return std::unexpected(transport("sagad sent invalid JSON"));
  return message;
}

ClientResult<json> Client::call(const std::string& method, json params) {
  int64_t id = next_id_;
  if (auto sent = send(method, std::move(params)); !sent) return std::unexpected(sent.error());
  for (;;) {
    auto message = read_message();
    if (!message) return message;
    auto it = message->find("id");
    if (it == message->end() || *it != id) continue;  // a notification
    if (auto err = message->find("error"); err != message->end()) {
      return std::unexpected(ClientError{ClientError::Kind::remote, err->value("code", 0),
                                         err->value("message", std::string("unknown error"))});
    }
    return message->value("result", json());
  }
}

}  // namespace saga::rpc
