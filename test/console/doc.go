// Package console tests the web console (cluster/api/ui) in a real
// browser: Debian's chromium, headless, driven by chromedp, against a
// cluster of real kumoi processes (docs/console.md).
package console
