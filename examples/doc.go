// Package examples holds Kumoi scripts an operator runs with `kumoi run`
// (Starlark files, *.star; see README.md and docs/scripting.md). It has no
// Go API: its tests run every script against an in-process dev cluster,
// through package script and through the kumoi command line, and check
// what the scripts did through the API.
package examples
