// login_client: a login load generator that runs PBKDF2 once per process, not per login as
// libpq does, so that logins per second compare proxies (pooler_bench.py's "logins" scenarios).
// Each thread connects, logs in, optionally runs one simple query, says Terminate, and repeats.
//
//   login_client --host 127.0.0.1 --port P --user U --password PW --dbname D
//                --threads N --seconds S [--query "SELECT 1"]
//
// Prints one JSON line: {"logins": n, "errors": e, "seconds": s, "logins_per_s": x, "cpu_s": c}
// (cpu_s: this process's own user + system CPU). The first failure goes to stderr.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/md5auth.h"
#include "protocol/messages.h"
#include "protocol/scram.h"

namespace {

namespace proto = pgswitch::protocol;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1", port, user, password, dbname, query;
  int threads = 4;
  double seconds = 5;
};

// SCRAM keys derived from the password for one (salt, iterations), shared by all threads.
// PBKDF2 (4096 HMACs by default) is what makes libpq's logins expensive; the server's salt
// and iteration count for a user do not change between logins, so it runs once per pair and
// each login costs only a few HMACs, like a proxy that keeps the derived keys.
class KeyCache {
 public:
  struct Keys {
    proto::ScramKey clientKey{}, storedKey{}, serverKey{};
  };
  explicit KeyCache(std::string password) : password_(std::move(password)) {}

  std::optional<Keys> get(const std::string& salt, int iterations) {
    std::lock_guard lock(mu_);
    auto it = keys_.find({salt, iterations});
    if (it != keys_.end()) return it->second;
    // Derived under the lock: the other threads would wait for the same keys anyway.
    uint8_t salted[32];
    if (PKCS5_PBKDF2_HMAC(password_.data(), static_cast<int>(password_.size()),
                          reinterpret_cast<const unsigned char*>(salt.data()),
                          static_cast<int>(salt.size()), iterations, EVP_sha256(), sizeof salted,
                          salted) != 1) {
      return std::nullopt;
    }
    Keys k;
    if (!proto::hmacSha256(salted, "Client Key", k.clientKey) ||
        !proto::hmacSha256(salted, "Server Key", k.serverKey) ||
        !proto::sha256(k.clientKey, k.storedKey)) {
      return std::nullopt;
    }
    keys_.emplace(std::pair{salt, iterations}, k);
    return k;
  }

 private:
  std::string password_;
  std::mutex mu_;
  std::map<std::pair<std::string, int>, Keys> keys_;
};

// Only the cache key (salt, iterations) of a server-first-message "r=..,s=..,i=..";
// ScramClient::handleServerFirst validates the whole message afterwards.
std::optional<std::pair<std::string, int>> saltAndIterations(std::string_view msg) {
  std::optional<std::string> salt;
  int iterations = 0;
  while (!msg.empty()) {
    size_t comma = msg.find(',');
    std::string_view part = msg.substr(0, comma);
    msg = comma == std::string_view::npos ? std::string_view{} : msg.substr(comma + 1);
    if (part.starts_with("s=")) salt = proto::base64Decode(part.substr(2));
    if (part.starts_with("i=")) {
      auto [p, ec] = std::from_chars(part.data() + 2, part.data() + part.size(), iterations);
      if (ec != std::errc{} || p != part.data() + part.size()) return std::nullopt;
    }
  }
  // The same cap as pgswitch's own client: a hostile count would stall the first login.
  if (!salt || salt->empty() || iterations < 1 || iterations > proto::kMaxServerScramIterations)
    return std::nullopt;
  return std::pair{std::move(*salt), iterations};
}

// A thread's receive buffer, reused by each of its connections so that a login allocates
// nothing for its reads: bytes [begin, end) are received and not yet consumed.
struct InBuffer {
  std::vector<std::byte> bytes = std::vector<std::byte>(16 * 1024);
  size_t begin = 0, end = 0;
};

// One blocking TCP connection with whole-message reads.
class Conn {
 public:
  explicit Conn(InBuffer& in) : in_(in) { in_.begin = in_.end = 0; }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool open(const sockaddr_storage& addr, socklen_t len, std::string& err) {
    fd_ = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return fail(err, "socket");
    // As libpq: every login step is one small message waiting for an answer.
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // A stuck server must not hang the run past its deadline by more than this. (No send
    // timeout: a few hundred bytes always fit in the socket buffer.)
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), len) != 0)
      return fail(err, "connect");
    return true;
  }

  bool send(std::string_view bytes, std::string& err) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(err, "send");
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // The next whole backend message; body stays valid until the next call.
  bool next(char& type, std::span<const std::byte>& body, std::string& err) {
    for (;;) {
      auto avail = std::span<const std::byte>(in_.bytes).subspan(in_.begin, in_.end - in_.begin);
      proto::Frame f = proto::readFrame(avail, kMaxMessage);
      if (f.status == proto::FrameStatus::Complete) {
        type = f.type;
        body = avail.subspan(5, f.total - 5);
        in_.begin += f.total;
        return true;
      }
      if (f.status == proto::FrameStatus::Invalid) {
        err = std::string("bad message from server: ") + (f.error ? f.error : "?");
        return false;
      }
      std::memmove(in_.bytes.data(), in_.bytes.data() + in_.begin, in_.end - in_.begin);
      in_.end -= in_.begin;
      in_.begin = 0;
      // Only a message longer than the buffer fills it; readFrame capped its length.
      if (in_.end == in_.bytes.size()) in_.bytes.resize(2 * in_.bytes.size());
      ssize_t n = ::recv(fd_, in_.bytes.data() + in_.end, in_.bytes.size() - in_.end, 0);
      if (n > 0) in_.end += static_cast<size_t>(n);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) {
        err = "server closed the connection";
        return false;
      }
      if (n < 0) return fail(err, "recv");
    }
  }

 private:
  static constexpr uint32_t kMaxMessage = 1 << 20;  // login and SELECT 1 replies are tiny

  static bool fail(std::string& err, const char* what) {
    err = std::string(what) + ": " + std::strerror(errno);
    return false;
  }

  int fd_ = -1;
  InBuffer& in_;
};

// Answers the server's authentication requests for one login.
class Authenticator {
 public:
  Authenticator(const Options& o, KeyCache& cache) : o_(o), cache_(cache) {}

  // One Authentication message -> the reply to send (empty if none). False on failure.
  bool handle(std::span<const std::byte> body, std::string& reply, std::string& err) {
    auto req = proto::parseAuthRequest(body);
    if (!req) return failWith(err, req.error());
    std::string_view data = proto::asText(req->data);
    switch (req->code) {
      case proto::auth::Ok:
        // A server that skips SASLFinal has not proved it knows the secret.
        if (scram_ && !verified_) return failWith(err, "AuthenticationOk before SASLFinal");
        return true;
      case proto::auth::CleartextPassword:
        proto::appendPasswordMessage(reply, o_.password);
        return true;
      case proto::auth::MD5Password:
        proto::appendPasswordMessage(
            reply, proto::md5SaltedResponse(o_.password, o_.user, req->data.first<4>()));
        return true;
      case proto::auth::SASL: {
        if (std::find(req->mechanisms.begin(), req->mechanisms.end(), proto::kScramSha256) ==
            req->mechanisms.end()) {
          return failWith(err, "server does not offer SCRAM-SHA-256");
        }
        nonce_ = proto::makeNonce();
        if (nonce_.empty()) return failWith(err, "no random nonce");
        // The keys depend on the salt, which only server-first tells; client-first is a
        // function of the nonce alone, so a keyless client writes it here and a keyed one,
        // built on SASLContinue with the same nonce, continues the exchange.
        scram_.emplace(proto::ScramClient::withKeys({}, {}, nonce_));
        proto::appendSaslInitial(reply, proto::kScramSha256, scram_->clientFirst());
        return true;
      }
      case proto::auth::SASLContinue: {
        if (!scram_) return failWith(err, "SASLContinue without SASL");
        auto key = saltAndIterations(data);
        if (!key) return failWith(err, "malformed SCRAM server-first-message");
        auto keys = cache_.get(key->first, key->second);
        if (!keys) return failWith(err, "PBKDF2 failed");
        proto::ScramSecret secret{.iterations = key->second,
                                  .salt = key->first,
                                  .storedKey = keys->storedKey,
                                  .serverKey = keys->serverKey};
        scram_.emplace(proto::ScramClient::withKeys(keys->clientKey, std::move(secret), nonce_));
        scram_->clientFirst();
        auto final = scram_->handleServerFirst(data);
        if (!final) return failWith(err, final.error());
        proto::appendSaslResponse(reply, *final);
        return true;
      }
      case proto::auth::SASLFinal: {
        if (!scram_) return failWith(err, "SASLFinal without SASL");
        auto ok = scram_->handleServerFinal(data);  // checks the server signature
        if (!ok) return failWith(err, ok.error());
        verified_ = true;
        return true;
      }
      default:
        return failWith(err, "unsupported authentication request " + std::to_string(req->code));
    }
  }

 private:
  static bool failWith(std::string& err, std::string why) {
    err = std::move(why);
    return false;
  }

  const Options& o_;
  KeyCache& cache_;
  std::string nonce_;
  std::optional<proto::ScramClient> scram_;
  bool verified_ = false;
};

std::string describeError(std::span<const std::byte> body) {
  auto e = proto::parseErrorFields(body);
  if (!e) return "malformed ErrorResponse";
  return std::string(e->severity) + " " + std::string(e->code) + ": " + std::string(e->message);
}

// Reads messages up to ReadyForQuery. With auth, Authentication requests are answered;
// without (after login), one is a protocol violation.
bool readUntilReady(Conn& c, Authenticator* auth, std::string& err) {
  for (;;) {
    char type = 0;
    std::span<const std::byte> body;
    if (!c.next(type, body, err)) return false;
    switch (type) {
      case proto::be::Authentication: {
        if (!auth) {
          err = "unexpected Authentication message";
          return false;
        }
        std::string reply;
        if (!auth->handle(body, reply, err)) return false;
        if (!reply.empty() && !c.send(reply, err)) return false;
        break;
      }
      case proto::be::ErrorResponse:
        err = describeError(body);
        return false;
      case proto::be::ReadyForQuery:
        return true;
      default:  // ParameterStatus, BackendKeyData, notices, query results: not needed here
        break;
    }
  }
}

bool loginOnce(const Options& o, const sockaddr_storage& addr, socklen_t len, KeyCache& cache,
               InBuffer& in, std::string& err) {
  Conn c(in);
  if (!c.open(addr, len, err)) return false;
  std::string out;
  const std::pair<std::string, std::string> params[] = {{"user", o.user}, {"database", o.dbname}};
  proto::appendStartup(out, params);
  if (!c.send(out, err)) return false;
  Authenticator auth(o, cache);
  if (!readUntilReady(c, &auth, err)) return false;
  if (!o.query.empty()) {
    out.clear();
    proto::appendQuery(out, o.query);
    if (!c.send(out, err) || !readUntilReady(c, nullptr, err)) return false;
  }
  out.clear();
  proto::appendTerminate(out);
  std::string ignored;  // the login succeeded; a failed goodbye does not change that
  c.send(out, ignored);
  return true;
}

struct Stats {
  std::atomic<uint64_t> logins{0}, errors{0};
  std::atomic<bool> reported{false};

  void fail(const std::string& why) {
    errors.fetch_add(1, std::memory_order_relaxed);
    if (!reported.exchange(true))
      std::fprintf(stderr, "login_client: first error: %s\n", why.c_str());
  }
};

double cpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "login_client: %s\nusage: login_client --host H --port P --user U "
               "[--password PW] --dbname D [--threads N] [--seconds S] [--query SQL]\n",
               why);
  std::exit(2);
}

Options parseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view name = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + std::string(name)).c_str());
    std::string value = argv[++i];
    if (name == "--host")
      o.host = value;
    else if (name == "--port")
      o.port = value;
    else if (name == "--user")
      o.user = value;
    else if (name == "--password")
      o.password = value;
    else if (name == "--dbname")
      o.dbname = value;
    else if (name == "--query")
      o.query = value;
    else if (name == "--threads")
      o.threads = std::atoi(value.c_str());
    else if (name == "--seconds")
      o.seconds = std::atof(value.c_str());
    else
      usage(("unknown option " + std::string(name)).c_str());
  }
  if (o.port.empty() || o.user.empty() || o.dbname.empty()) usage("--port, --user, --dbname");
  if (o.threads < 1 || o.seconds <= 0) usage("--threads and --seconds must be positive");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parseArgs(argc, argv);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* ai = nullptr;
  if (int rc = ::getaddrinfo(o.host.c_str(), o.port.c_str(), &hints, &ai); rc != 0) {
    std::fprintf(stderr, "login_client: %s:%s: %s\n", o.host.c_str(), o.port.c_str(),
                 gai_strerror(rc));
    return 2;
  }
  sockaddr_storage addr{};
  socklen_t len = ai->ai_addrlen;
  std::memcpy(&addr, ai->ai_addr, len);
  ::freeaddrinfo(ai);

  KeyCache cache(o.password);
  Stats stats;
  double cpu0 = cpuSeconds();
  auto start = Clock::now();
  auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t) {
    threads.emplace_back([&] {
      InBuffer in;
      while (Clock::now() < deadline) {
        std::string err;
        if (loginOnce(o, addr, len, cache, in, err)) {
          stats.logins.fetch_add(1, std::memory_order_relaxed);
        } else {
          stats.fail(err);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  uint64_t n = stats.logins.load();
  std::printf(
      "{\"logins\": %llu, \"errors\": %llu, \"seconds\": %.3f, \"logins_per_s\": %.1f, "
      "\"cpu_s\": %.3f}\n",
      static_cast<unsigned long long>(n), static_cast<unsigned long long>(stats.errors.load()),
      secs, n / secs, cpuSeconds() - cpu0);
  return 0;
}
