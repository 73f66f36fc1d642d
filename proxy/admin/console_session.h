// ConsoleSession: the admin console behind the virtual database "pgswitch". Once a client
// session has authenticated an admin user for that database, it hands its socket's input to
// this object (and ends through ConsoleHost): each simple Query is answered by runConsole() from a freshly gathered Snapshot,
// followed by ReadyForQuery. No server connection is ever made. The extended protocol is
// refused (0A000, then ReadyForQuery at Sync), as the console has no statements to prepare.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/admin/console_commands.h"
#include "proxy/core/stats.h"

namespace pgswitch::proxy {

class Conn;
class Worker;

inline constexpr std::string_view kConsoleDatabase = "pgswitch";

// The client session that owns the socket: ends it when the console is done with it.
class ConsoleHost {
 public:
  // Ends the session once what is queued is written: after a FATAL with this SQLSTATE and
  // message, or (empty sqlstate) without one (Terminate, SHUTDOWN's answer).
  virtual void consoleEnd(std::string_view sqlstate, std::string_view message) = 0;

 protected:
  ~ConsoleHost() = default;
};

class ConsoleSession {
 public:
  ConsoleSession(ConsoleHost& owner, Worker& w, Conn& client);
  ~ConsoleSession();
  ConsoleSession(const ConsoleSession&) = delete;
  ConsoleSession& operator=(const ConsoleSession&) = delete;

  // The rest of the login: ParameterStatus, BackendKeyData, ReadyForQuery.
  // `role`: what the user may run (admin_users everything, stats_users SHOW and HELP).
  void start(std::string_view user, std::string_view applicationName,
             std::string_view clientEncoding, int32_t pid, int32_t key,
             ConsoleRole role = ConsoleRole::Admin);
  // Client bytes arrived (or a gathered answer was written): handle what is complete.
  void onRead();
  // The session is closing: answers still being gathered are dropped.
  void detach() { closed_ = true; }

 private:
  void runQuery(std::string sql);
  void answer(const Snapshot& snap, const std::string& sql);
  void reply(std::string out);  // + ReadyForQuery, then read on

  ConsoleHost& owner_;
  Worker& worker_;
  Conn& client_;
  std::vector<std::byte> scratch_;
  bool busy_ = false;        // a Snapshot is being gathered for the current Query
  bool skipToSync_ = false;  // extended protocol refused: drop messages up to Sync
  bool closed_ = false;
  ConsoleRole role_ = ConsoleRole::Admin;
  // Continuations of a gather check this to learn whether the session still exists.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace pgswitch::proxy
