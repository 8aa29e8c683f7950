// Package conformance is the one test suite every hypervisor.Driver must
// pass. A driver's own test calls Run with a constructor that returns a
// fresh driver for each test and Hooks for what the Driver interface cannot
// do itself (a guest powering off, a crash, a domain defined behind the
// driver's back, a lost connection). Tests whose hook is missing, or whose
// capability the driver does not claim, are skipped with a reason; a
// capability the driver does not claim must make its operations fail with
// hypervisor.ErrUnsupported.
//
// The suite waits by polling with deadlines (stretched when CI is set),
// never by sleeping, and cleans up every domain it defines, so it can run
// against a shared hypervisor such as qemu:///system.
//
// It must not import a driver: drivers import it from their tests.
package conformance
