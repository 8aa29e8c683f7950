package fenceguard

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now is the host's boot-time clock (CLOCK_BOOTTIME): monotonic, the same
// in every process on the host, and it keeps counting while the host is
// suspended, so a proof taken before a suspend is old after it. Proofs
// travel between the worker and the guard in this clock; no wall clock
// takes part in a fencing decision.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// Linux has had CLOCK_BOOTTIME since 2.6.39.
		panic("fenceguard: CLOCK_BOOTTIME: " + err.Error())
	}
	return time.Duration(ts.Nano())
}
