package resource

import "testing"

func TestSchedulable(t *testing.T) {
	const gib = 1 << 10
	for _, tc := range []struct {
		name     string
		cpu, mem float64 // the spec's overcommit ratios
		capacity Resources
		want     Resources
	}{
		{name: "ratios omitted: no overcommit", capacity: Resources{CPUs: 16, MemoryMiB: 64 * gib},
			want: Resources{CPUs: 16, MemoryMiB: 64 * gib}},
		{name: "ratios of 1", cpu: 1, mem: 1, capacity: Resources{CPUs: 16, MemoryMiB: 64 * gib},
			want: Resources{CPUs: 16, MemoryMiB: 64 * gib}},
		{name: "cpu overcommit only", cpu: 4, mem: 1, capacity: Resources{CPUs: 16, MemoryMiB: 64 * gib},
			want: Resources{CPUs: 64, MemoryMiB: 64 * gib}},
		{name: "both overcommitted", cpu: 2, mem: 1.5, capacity: Resources{CPUs: 8, MemoryMiB: 16 * gib},
			want: Resources{CPUs: 16, MemoryMiB: 24 * gib}},
		{name: "fractions round down", cpu: 1.5, mem: 1.5, capacity: Resources{CPUs: 3, MemoryMiB: 3},
			want: Resources{CPUs: 4, MemoryMiB: 4}},
		{name: "a product just under a whole number counts as it", cpu: 1.4, mem: 2.3, capacity: Resources{CPUs: 45, MemoryMiB: 50},
			want: Resources{CPUs: 63, MemoryMiB: 115}},
		{name: "ratios under 1 count as 1", cpu: 0.5, mem: -2, capacity: Resources{CPUs: 16, MemoryMiB: 64 * gib},
			want: Resources{CPUs: 16, MemoryMiB: 64 * gib}},
		{name: "ratios at the cap", cpu: MaxOvercommit, mem: MaxOvercommit, capacity: Resources{CPUs: 2, MemoryMiB: gib},
			want: Resources{CPUs: 128, MemoryMiB: 64 * gib}},
		{name: "ratios over the cap are capped", cpu: 1000, mem: MaxOvercommit + 0.5, capacity: Resources{CPUs: 2, MemoryMiB: gib},
			want: Resources{CPUs: 2 * MaxOvercommit, MemoryMiB: MaxOvercommit * gib}},
		{name: "capacity over the bounds is capped", cpu: 1, mem: 1, capacity: Resources{CPUs: 3 * MaxHostCPUs, MemoryMiB: 5 * MaxHostMemoryMiB},
			want: Resources{CPUs: MaxHostCPUs, MemoryMiB: MaxHostMemoryMiB}},
		{name: "capped capacity times capped ratios", cpu: 100, mem: 100, capacity: Resources{CPUs: MaxHostCPUs + 1, MemoryMiB: MaxHostMemoryMiB + 1},
			want: Resources{CPUs: MaxHostCPUs * MaxOvercommit, MemoryMiB: MaxHostMemoryMiB * MaxOvercommit}},
		{name: "no capacity", cpu: 4, mem: 4, want: Resources{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &HostSpec{CPUOvercommit: tc.cpu, MemoryOvercommit: tc.mem}
			st := &HostStatus{State: HostReady, Capacity: tc.capacity, Allocated: Resources{CPUs: 1, MemoryMiB: 1}}
			if got := Schedulable(spec, st); got != tc.want {
				t.Errorf("Schedulable(overcommit %g/%g, capacity %+v) = %+v; want %+v", tc.cpu, tc.mem, tc.capacity, got, tc.want)
			}
		})
	}
}
