// Package docs checks the claims of the READMEs that a program can check: that `make bench`
// runs every benchmark, that the flags the READMEs write exist in the spelling they use.
package docs
