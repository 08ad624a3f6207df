// cli/probe.ts imports the `--ports` parser from here; its owner is api/matrix-rows.ts (this file goes
// when cli/probe.ts imports it from there).
export { formatPort, PortsError, parsePorts } from "../api/matrix-rows.ts";
