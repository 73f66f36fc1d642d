// Service manager notifications (systemd's sd_notify protocol): READY=1 once pgswitch serves,
// RELOADING=1 / READY=1 around a reload, STOPPING=1 at shutdown. No-ops outside systemd.
#pragma once

#include <string_view>

namespace pgswitch::proxy {

// Sends `state` ("READY=1\nSTATUS=...") as one datagram to $NOTIFY_SOCKET. Returns false
// when there is no socket to tell or the send failed; callers never depend on it.
//
// Why not libsystemd's sd_notify(): the protocol is one AF_UNIX datagram of newline-separated
// KEY=VALUE lines to the path in $NOTIFY_SOCKET (a leading '@' = abstract namespace), which
// systemd documents as a stable interface and suggests reimplementing rather than linking
// (sd_notify(3), "NOTES"). Doing it here keeps the binary's behaviour the same whether or
// not libsystemd-dev was present at build time, and the test can play the service manager.
bool notifyServiceManager(std::string_view state) noexcept;

// "RELOADING=1\nMONOTONIC_USEC=<now>": systemd 253+ (Type=notify-reload) wants the
// timestamp with RELOADING=1; older managers ignore the extra field.
bool notifyReloading() noexcept;

}  // namespace pgswitch::proxy
