// Command kumoi is Kumoi's single binary: the agent (controller and worker)
// and the client commands. See package cli.
package main

import (
	"os"

	"github.com/kumoi/kumoi/cli"
)

func main() { os.Exit(cli.Main(os.Args)) }
