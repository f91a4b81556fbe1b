// Package initcmd is the command line of the traffic-capture installer:
// flags, dry run, install or remove, and the report. Two binaries run it:
// cmd/causeway-init, and cmd/causeway-proxy as its "init" subcommand (the
// injected init container runs the proxy image with args "init ...", so a
// pod needs one image). Both take the same flags and exit with the same
// codes.
//
// Concurrency: Run holds no state between calls; concurrent calls would
// race on the network namespace's nat table, which is why a pod runs one.
package initcmd
