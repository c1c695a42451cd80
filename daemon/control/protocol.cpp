#include "control/protocol.hpp"

namespace saga::rpc {

int error_code_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return kInvalidParams;
    case ErrorCode::not_found:
      return kNotFound;
    case ErrorCode::failed_precondition:
      return kFailedPrecondition;
    case ErrorCode::already_exists:
      return kAlreadyExists;
    case ErrorCode::unavailable:
      return kUnavailable;
    case ErrorCode::internal:
      return kInternalError;
  }
  return kInternalError;
}

ErrorCode error_code_from(int rpc_code) {
  switch (rpc_code) {
    case kNotFound:
      return ErrorCode::not_found;
    case kFailedPrecondition:
      return ErrorCode::failed_precondition;
    case kAlreadyExists:
      return ErrorCode::already_exists;
    case kUnavailable:
      return ErrorCode::unavailable;
    case kInvalidParams:
    case kInvalidRequest:
    case kParseError:
      return ErrorCode::invalid_argument;
    default:
      return ErrorCode::internal;
  }
}

bool LineBuffer::feed(std::string_view data, std::vector<std::string>& lines) {
  while (!data.empty()) {
    size_t nl = data.find('\n');
    if (nl == std::string_view::npos) {
      pending_.append(data);
      return pending_.size() <= max_line_;
    }
    pending_.append(data.substr(0, nl));
    data.remove_prefix(nl + 1);
    if (pending_.size() > max_line_) return false;
    if (!pending_.empty() && pending_.back() == '\r') pending_.pop_back();
    lines.push_back(std::move(pending_));
    pending_.clear();
  }
  return true;
}

json make_request(const json& id, std::string_view method, json params) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}};
}

json make_notification(std::string_view method, json params) {
  return {{"jsonrpc", "2.0"}, {"method", method}, {"params", std::move(params)}};
}

json make_result(const json& id, json result) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

json make_error(const json& id, int code, std::string_view message) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

std::optional<Request> parse_request(json& message, int& error_code, std::string& error) {
  error_code = kInvalidRequest;
  if (!message.is_object()) {
    error = "a request must be a JSON object";
    return std::nullopt;
  }
  auto version = message.find("jsonrpc");
  if (version == message.end() || *version != "2.0") {
    error = "a request must have \"jsonrpc\": \"2.0\"";
    return std::nullopt;
  }
  Request r;
  // A request without "id" is a notification: it is carried out and never answered.
  r.id = json(json::value_t::discarded);
  if (auto id = message.find("id"); id != message.end()) {
    if (!id->is_string() && !id->is_number() && !id->is_null()) {
      error = "\"id\" must be a string, a number or null";
      return std::nullopt;
    }
    r.id = *id;
  }
  auto method = message.find("method");
  if (method == message.end() || !method->is_string()) {
    error = "a request must have a string \"method\"";
    return std::nullopt;
  }
  r.method = method->get<std::string>();
  if (auto params = message.find("params"); params != message.end() && !params->is_null()) {
    if (!params->is_object()) {
      error_code = kInvalidParams;
      error = "\"params\" must be an object";
      return std::nullopt;
    }
    r.params = std::move(*params);
  } else {
    r.params = json::object();
  }
  return r;
}

}  // namespace saga::rpc
