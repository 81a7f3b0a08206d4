package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/ui"
)

// spec is the one shape of a `docker dockbridge` command: a new command fills in what it
// is (Use, Short, ...), its flags, Run and how its result reads as text; build adds the steps
// every command takes, in this order:
//
//  1. the positional arguments are checked (Args, default none), as Docker checks them;
//  2. -o is parsed before anything else is done (Formats; none: the command has no -o);
//  3. Run is called with a context that Ctrl-C and SIGTERM cancel (so deferred cleanups, such
//     as restarting stopped containers, still run);
//  4. the result is printed on stdout: as indented JSON with -o json (a nil slice as []), else
//     by Print. A nil pointer prints nothing (the command has already said what it did).
//
// Run's error ends the command before anything is printed, unless it is wrapped with
// afterOutput: then the result is printed first (the backups that were made before one
// failed, or the check results that make the command fail).
type spec[R any] struct {
	Use, Short, Long, Example string
	Aliases                   []string
	// Args checks the positional arguments; nil means none. Use docker/cli's checks
	// (cli.ExactArgs, cli.RequiresRangeArgs, ...): their errors read as Docker's own.
	Args cobra.PositionalArgs
	// Complete completes the positional arguments (see completion.go).
	Complete cobra.CompletionFunc
	// Flags adds the command's own flags.
	Flags func(*cobra.Command, *pflag.FlagSet)
	// Formats are the accepted -o values, the default first; "json" prints JSON and every
	// other value Print. Empty: no -o flag.
	Formats []string
	Run     func(ctx context.Context, cmd *cobra.Command, args []string) (R, error)
	// Print writes the result in the default format; format is the -o value, lower case.
	Print func(w io.Writer, format string, r R) error
}

// tableOrJSON is the -o of most commands.
var tableOrJSON = []string{"table", "json"}

func (c spec[R]) build(out io.Writer) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: c.Use, Short: c.Short, Long: c.Long, Example: c.Example, Aliases: c.Aliases,
		Args:              c.Args,
		ValidArgsFunction: c.Complete,
	}
	if cmd.Args == nil {
		cmd.Args = cli.NoArgs
	}
	if cmd.ValidArgsFunction == nil {
		cmd.ValidArgsFunction = cobra.NoFileCompletions
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		format, err := parseFormat(output, c.Formats)
		if err != nil {
			return err
		}
		ctx, cancel := interruptible(cmd)
		defer cancel()
		r, err := c.Run(ctx, cmd, args)
		var after *printedFirst
		if err != nil && !errors.As(err, &after) {
			return err
		}
		if perr := c.print(out, format, r); perr != nil && err == nil {
			return perr
		}
		if after != nil {
			return after.err
		}
		return nil
	}
	if len(c.Formats) > 0 {
		def := c.Formats[0]
		if def == "table" {
			def = "" // as in Docker's own help, a table goes without saying
		}
		cmd.Flags().StringVarP(&output, "output", "o", def, "output format: "+strings.Join(c.Formats, " or "))
		completeFlag(cmd, "output", cobra.FixedCompletions(c.Formats, cobra.ShellCompDirectiveNoFileComp))
	}
	if c.Flags != nil {
		c.Flags(cmd, cmd.Flags())
	}
	return cmd
}

func (c spec[R]) print(w io.Writer, format string, r R) error {
	v := reflect.ValueOf(&r).Elem()
	switch {
	case v.Kind() == reflect.Pointer && v.IsNil():
		return nil
	case format == "json" && v.Kind() == reflect.Slice && v.IsNil():
		return ui.JSON(w, []struct{}{})
	case format == "json":
		return ui.JSON(w, r)
	case c.Print != nil:
		return c.Print(w, format, r)
	}
	return nil
}

// parseFormat checks a -o value against the accepted ones ("" is the default).
func parseFormat(s string, formats []string) (string, error) {
	if len(formats) == 0 {
		return "", nil
	}
	f := strings.ToLower(strings.TrimSpace(s))
	if f == "" {
		return formats[0], nil
	}
	for _, ok := range formats {
		if f == ok {
			return f, nil
		}
	}
	return "", fmt.Errorf("output format %q: use -o %s", s, strings.Join(formats, " or -o "))
}

// printedFirst is an error that comes after the result is printed.
type printedFirst struct{ err error }

func (p *printedFirst) Error() string { return p.err.Error() }
func (p *printedFirst) Unwrap() error { return p.err }

// afterOutput makes Run's error come after its result is printed; nil stays nil.
func afterOutput(err error) error {
	if err == nil {
		return nil
	}
	return &printedFirst{err}
}

// interruptible cancels on Ctrl-C / SIGTERM: `up` stops at a point the next run resumes from,
// a backup starts the containers it stopped again.
func interruptible(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// group is a command that holds others. Bare, it prints its help (on stderr, as Docker's own
// groups do) and succeeds; any word after it is an unknown command (see unknownCommand).
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  unknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			return cmd.Help()
		},
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cmd.AddCommand(subs...)
	return cmd
}

// unknownCommand is the argument check of a group: a word that is none of its commands is an
// error, worded as `docker volume foo` words it, with cobra's suggestions for a near miss
// (a typo in a cron line must fail, not print help and exit 0).
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	path := cmd.CommandPath()
	return fmt.Errorf("%s: unknown command: %s %s%s\n\nRun '%s --help' for more information",
		cmd.Root().Name(), path, args[0], suggestions(cmd, args[0]), path)
}

// suggestions is cobra's "Did you mean this?" for a word near one of cmd's commands, or "".
func suggestions(cmd *cobra.Command, word string) string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	s := cmd.SuggestionsFor(word)
	if len(s) == 0 {
		return ""
	}
	return "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
}
