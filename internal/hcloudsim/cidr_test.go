package hcloudsim_test

import "net"

type netIPNet = net.IPNet

var parseCIDR = net.ParseCIDR
