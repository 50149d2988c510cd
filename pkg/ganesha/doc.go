// Package ganesha runs an embedded NFS-Ganesha server (FSAL VFS) and manages
// its exports at run time over a private D-Bus.
//
// Layout of a state directory (Config.StateDir):
//
//	ganesha.conf        main config, rendered by Server on every (re)start
//	exports.conf        %include list of every export file, kept by ExportManager
//	exports/<id>.conf   one EXPORT block per export; the source of truth on disk
//	dbus.conf           config of the private dbus-daemon
//	recovery/           NFSv4 RecoveryRoot (client records survive with the store)
//	run/                dbus.sock and the PID files of the children
//	log/                ganesha.log, dbus.log, rpcbind.log
//
// Every value written into a ganesha config is validated first (validate.go)
// and rendered from structs (config.go); parse.go reads back the subset we
// emit, so the round trip can be fuzzed.
package ganesha
