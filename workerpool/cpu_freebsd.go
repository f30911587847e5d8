package workerpool

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// cpuTimes returns the idle and total CPU time of the machine since boot, in clock
// ticks, from sysctl kern.cp_time: CPUSTATES longs (user, nice, sys, intr, idle) summed
// over the CPUs.
func cpuTimes() (idle, total uint64, ok bool) {
	const cpuStates, cpIdle = 5, 4
	b, err := unix.SysctlRaw("kern.cp_time")
	if err != nil || len(b)%cpuStates != 0 || len(b) == 0 {
		return 0, 0, false
	}
	word := len(b) / cpuStates // the size of a long
	if word != 8 && word != 4 {
		return 0, 0, false
	}
	for i := 0; i < cpuStates; i++ {
		var v uint64
		if word == 8 {
			v = binary.NativeEndian.Uint64(b[i*8:])
		} else {
			v = uint64(binary.NativeEndian.Uint32(b[i*4:]))
		}
		total += v
		if i == cpIdle {
			idle = v
		}
	}
	return idle, total, true
}
