// notifyServiceManager: the sd_notify datagram reaches the socket named by NOTIFY_SOCKET, by a
// filesystem path or in the abstract namespace ('@'), and nothing is sent (false) without one.
#include "proxy/core/service_notify.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace pgswitch::proxy {
namespace {

// A datagram socket bound at `name` (a path, or '@' + an abstract name), as systemd's.
class Receiver {
 public:
  explicit Receiver(const std::string& name) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, name.data(), name.size());
    if (name[0] == '@') a.sun_path[0] = '\0';
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                           (name[0] == '/' ? 1 : 0));
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) == 0;
    timeval tv{2, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Receiver() { ::close(fd_); }
  bool bound() const { return bound_; }
  std::string recv() {
    char buf[512];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
  bool bound_ = false;
};

class NotifyEnv : public ::testing::Test {
 protected:
  void TearDown() override { unsetenv("NOTIFY_SOCKET"); }
};

TEST_F(NotifyEnv, SendsToAFilesystemSocket) {
  std::string path = "/tmp/pgswitch-notify-test-" + std::to_string(getpid());
  ::unlink(path.c_str());
  Receiver r(path);
  ASSERT_TRUE(r.bound());
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  EXPECT_TRUE(notifyServiceManager("READY=1\nSTATUS=serving"));
  EXPECT_EQ(r.recv(), "READY=1\nSTATUS=serving");
  ::unlink(path.c_str());
}

TEST_F(NotifyEnv, SendsToAnAbstractSocket) {
  std::string name = "@pgswitch-notify-test-" + std::to_string(getpid());
  Receiver r(name);
  ASSERT_TRUE(r.bound());
  setenv("NOTIFY_SOCKET", name.c_str(), 1);
  EXPECT_TRUE(notifyReloading());
  std::string got = r.recv();
  EXPECT_EQ(got.rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u) << got;
  EXPECT_GT(got.size(), std::strlen("RELOADING=1\nMONOTONIC_USEC="));
}

TEST_F(NotifyEnv, NothingWithoutAUsableSocket) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(notifyServiceManager("READY=1"));
  setenv("NOTIFY_SOCKET", "", 1);
  EXPECT_FALSE(notifyServiceManager("READY=1"));
  setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);  // systemd 253+ transports: not ours
  EXPECT_FALSE(notifyServiceManager("READY=1"));
  setenv("NOTIFY_SOCKET", ("/" + std::string(200, 'x')).c_str(), 1);  // longer than sun_path
  EXPECT_FALSE(notifyServiceManager("READY=1"));
  setenv("NOTIFY_SOCKET", "/nonexistent/pgswitch-notify", 1);  // nobody listening
  EXPECT_FALSE(notifyServiceManager("READY=1"));
}

}  // namespace
}  // namespace pgswitch::proxy
