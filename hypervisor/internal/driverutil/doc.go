// Package driverutil holds what every hypervisor driver needs and no caller
// should see: the non-blocking event queue behind Driver.Events and the
// observation log writer. It must not import a driver.
package driverutil
