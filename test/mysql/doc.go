// Package mysql tests deploy/statefulset.yaml: the manifest statically, and
// the scripts of its ConfigMap dynamically, by running them as the pods would
// against real mariadbd, mariadb-backup and socat processes on loopback
// addresses. The scripts are read from the manifest itself, so what is tested
// is what ships.
package mysql
