package resource

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var memUnits = []struct {
	suffix string
	mib    float64
}{
	{"tib", 1 << 20}, {"gib", 1 << 10}, {"mib", 1}, {"kib", 1.0 / 1024},
	{"tb", 1e12 / (1 << 20)}, {"gb", 1e9 / (1 << 20)}, {"mb", 1e6 / (1 << 20)},
	{"t", 1 << 20}, {"g", 1 << 10}, {"m", 1},
}

// ParseMemoryMiB parses a memory size such as "512MiB", "2GiB", "1.5G" or a
// bare number of MiB, and returns whole MiB (rounded up).
func ParseMemoryMiB(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("memory size is empty; write e.g. 512MiB or 2GiB")
	}
	mult := 1.0
	for _, u := range memUnits {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			mult = u.mib
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("memory size %q is not understood; write e.g. 512MiB, 2GiB or 1.5GiB", s)
	}
	mib := math.Ceil(v * mult)
	if mib > MaxVMMemoryMiB*1024 {
		return 0, fmt.Errorf("memory size %q is too large", s)
	}
	return int64(mib), nil
}

// FormatMiB prints MiB in the largest binary unit that keeps it whole-ish:
// 512 → "512MiB", 2048 → "2GiB", 1536 → "1.5GiB".
func FormatMiB(mib int64) string {
	switch {
	case mib >= 1<<20 && mib%(1<<10) == 0:
		return trimFloat(float64(mib)/(1<<20)) + "TiB"
	case mib >= 1<<10:
		return trimFloat(float64(mib)/(1<<10)) + "GiB"
	}
	return strconv.FormatInt(mib, 10) + "MiB"
}

func trimFloat(f float64) string {
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}
