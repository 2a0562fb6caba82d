// Status and Result<T>: expected failures as values (../shared/STYLE.md, "Errors"). A timeout, a
// CRC error, a broker that is down or a full disk is not exceptional for a gateway; it is data the
// caller must look at. [[nodiscard]] makes ignoring one a compiler warning.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace gw {

class [[nodiscard]] Status {
 public:
  enum class Code { kOk, kInvalidArgument, kNotFound, kIoError, kTimeout, kUnavailable, kCorrupt,
                    kFull, kBusy, kProtocol };

  Status() = default;
  static Status ok() { return {}; }
  static Status error(Code code, std::string message) { return Status(code, std::move(message)); }
  static Status invalid(std::string m) { return error(Code::kInvalidArgument, std::move(m)); }
  static Status io_error(std::string m) { return error(Code::kIoError, std::move(m)); }
  static Status timeout(std::string m) { return error(Code::kTimeout, std::move(m)); }
  static Status unavailable(std::string m) { return error(Code::kUnavailable, std::move(m)); }
  static Status corrupt(std::string m) { return error(Code::kCorrupt, std::move(m)); }
  static Status full(std::string m) { return error(Code::kFull, std::move(m)); }
  static Status protocol(std::string m) { return error(Code::kProtocol, std::move(m)); }

  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Result<T> holds either a value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                                   // NOLINT
  Result(Status status) : v_(std::move(status)) {}                            // NOLINT

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  const T* operator->() const { return &value(); }
  Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace gw
