//go:build !linux && !freebsd

package workerpool

// cpuTimes: no portable source without cgo here (macOS has host_statistics, a Mach call),
// so autoscaling adds workers on queueing alone.
func cpuTimes() (idle, total uint64, ok bool) { return 0, 0, false }
