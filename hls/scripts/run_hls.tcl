# Vitis HLS flow for the hitgate trigger kernel: C simulation, synthesis, C/RTL co-simulation, export
# as a Vitis kernel (.xo). Run from hls/ where Vitis HLS is installed (not on hitgate's build machines):
#
#   vitis_hls -f scripts/run_hls.tcl            (all steps)
#   HG_STEPS="csim synth" vitis_hls -f scripts/run_hls.tcl
#
# The part defaults to the Alveo U280's; HG_PART overrides it. Reports land in
# hitgate_trigger/solution1/syn/report/ (latency in cycles, resources) for bitstreams/<board>/manifest.toml.

set part [expr {[info exists ::env(HG_PART)] ? $::env(HG_PART) : "xcu280-fsvh2892-2L-e"}]
set steps [expr {[info exists ::env(HG_STEPS)] ? $::env(HG_STEPS) : "csim synth cosim export"}]
set clock_ns 3.33

open_project -reset hitgate_trigger
set_top hitgate_trigger
add_files kernels/hitgate_trigger.cpp -cflags "-std=c++11 -I include -I weights"
add_files -tb tb/tb_hitgate_trigger.cpp -cflags "-std=c++11 -I include -I weights"
add_files -tb tb/data
open_solution -reset solution1 -flow_target vitis
set_part $part
create_clock -period $clock_ns -name default
config_interface -m_axi_alignment_byte_size 64 -m_axi_max_widen_bitwidth 512

if {[lsearch $steps csim] >= 0} { csim_design -argv "data/inputs.txt data/expected.txt" }
if {[lsearch $steps synth] >= 0} { csynth_design }
if {[lsearch $steps cosim] >= 0} { cosim_design -argv "data/inputs.txt data/expected.txt" }
if {[lsearch $steps export] >= 0} { export_design -format xo -output hitgate_trigger.xo }
exit
