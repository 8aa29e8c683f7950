//go:build libvirt_dlopen

package libvirt

import (
	lv "libvirt.org/go/libvirt"

	"github.com/kumoi/kumoi/hypervisor"
)

// state maps a libvirt domain state and its reason to ours.
func state(s lv.DomainState, reason int) (hypervisor.State, string) {
	switch s {
	case lv.DOMAIN_RUNNING, lv.DOMAIN_BLOCKED:
		return hypervisor.StateRunning, pick(reason, "unknown", "booted", "migrated", "restored", "from-snapshot",
			"unpaused", "migration-canceled", "save-canceled", "wakeup", "crashed", "postcopy", "postcopy-failed")
	case lv.DOMAIN_PAUSED:
		return hypervisor.StatePaused, pick(reason, "unknown", "user", "migration", "save", "dump", "io-error",
			"watchdog", "from-snapshot", "shutdown", "snapshot", "api-error", "starting-up", "postcopy", "postcopy-failed")
	case lv.DOMAIN_SHUTDOWN:
		return hypervisor.StateShuttingDown, pick(reason, "unknown", "user")
	case lv.DOMAIN_SHUTOFF:
		return hypervisor.StateShutoff, pick(reason, "unknown", hypervisor.StopShutdown, hypervisor.StopDestroyed,
			hypervisor.StopCrashed, "migrated", "saved", hypervisor.StopFailed, "from-snapshot", "daemon")
	case lv.DOMAIN_CRASHED:
		return hypervisor.StateCrashed, pick(reason, "unknown", "panicked")
	case lv.DOMAIN_PMSUSPENDED:
		return hypervisor.StatePMSuspended, "unknown"
	}
	return hypervisor.StateUnknown, "unknown"
}

func pick(i int, names ...string) string {
	if i < 0 || i >= len(names) {
		return "unknown"
	}
	return names[i]
}

// event maps a libvirt lifecycle event to ours; ok is false for events
// Kumoi does not report (a shutdown in progress).
func event(e lv.DomainEventType, detail int) (kind hypervisor.EventKind, reason string, ok bool) {
	switch e {
	case lv.DOMAIN_EVENT_DEFINED:
		return hypervisor.EventDefined, pick(detail, "added", "updated", "renamed", "from-snapshot"), true
	case lv.DOMAIN_EVENT_UNDEFINED:
		return hypervisor.EventUndefined, pick(detail, "removed", "renamed"), true
	case lv.DOMAIN_EVENT_STARTED:
		return hypervisor.EventStarted, pick(detail, "booted", "migrated", "restored", "from-snapshot", "wakeup"), true
	case lv.DOMAIN_EVENT_SUSPENDED:
		return hypervisor.EventSuspended, pick(detail, "paused", "migrated", "io-error", "watchdog", "restored",
			"from-snapshot", "api-error", "postcopy", "postcopy-failed"), true
	case lv.DOMAIN_EVENT_RESUMED:
		return hypervisor.EventResumed, pick(detail, "unpaused", "migrated", "from-snapshot", "postcopy", "postcopy-failed"), true
	case lv.DOMAIN_EVENT_STOPPED:
		switch lv.DomainEventStoppedDetailType(detail) {
		case lv.DOMAIN_EVENT_STOPPED_SHUTDOWN:
			return hypervisor.EventStopped, hypervisor.StopShutdown, true
		case lv.DOMAIN_EVENT_STOPPED_DESTROYED:
			return hypervisor.EventStopped, hypervisor.StopDestroyed, true
		case lv.DOMAIN_EVENT_STOPPED_CRASHED:
			return hypervisor.EventStopped, hypervisor.StopCrashed, true
		case lv.DOMAIN_EVENT_STOPPED_FAILED:
			return hypervisor.EventStopped, hypervisor.StopFailed, true
		}
		return hypervisor.EventStopped, hypervisor.StopOther, true
	case lv.DOMAIN_EVENT_PMSUSPENDED:
		return hypervisor.EventSuspended, "pmsuspended", true
	case lv.DOMAIN_EVENT_CRASHED:
		// The guest panicked. With on_crash=destroy (Kumoi's domains) a
		// STOPPED/CRASHED event follows; with preserve the domain stays in
		// state crashed. Either way it no longer runs.
		return hypervisor.EventStopped, hypervisor.StopCrashed, true
	}
	return "", "", false
}
