#include "storage/seq_floor.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace gw::storage {

namespace {

Status write_all(int fd, const std::string& text, const std::string& path) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::io_error("write " + path + ": " + std::strerror(errno));
    done += static_cast<std::size_t>(n);
  }
  return Status::ok();
}

}  // namespace

Result<uint64_t> SeqFloor::load() {
  std::ifstream in(path_);
  if (!in) {
    value_ = 0;
    return uint64_t{0};
  }
  std::string text;
  std::getline(in, text);
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return Status::corrupt(path_ + " does not hold a seq (got '" + text.substr(0, 32) + "')");
  }
  value_ = v;
  return v;
}

Status SeqFloor::ensure_above(uint64_t next_seq) {
  if (value_ >= next_seq + kBlock / 2) return Status::ok();
  const uint64_t target = next_seq + kBlock;
  const std::string tmp = path_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return Status::io_error("create " + tmp + ": " + std::strerror(errno));
  Status s = write_all(fd, std::to_string(target) + "\n", tmp);
  if (s && ::fsync(fd) != 0) s = Status::io_error("fsync " + tmp + ": " + std::strerror(errno));
  ::close(fd);
  if (s && ::rename(tmp.c_str(), path_.c_str()) != 0) {
    s = Status::io_error("rename " + tmp + ": " + std::strerror(errno));
  }
  if (!s) {
    ::unlink(tmp.c_str());
    return s;
  }
  // The rename is durable only once the folder is synced.
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  value_ = target;
  return Status::ok();
}

}  // namespace gw::storage
