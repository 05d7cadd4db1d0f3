/** What bench/pi-instructions.ts (the host) and bench/pi/guest.ts (inside the arm64 guest) exchange. */

/** What the host asks for (written by bench/pi-instructions.ts as plan.json). */
export interface GuestPlan {
  /** Round trips per measured window. */
  ops: number;
  /** Load clients, each with one round trip in flight (1: one at a time). */
  clients: number;
  /** Round trips before the first window (the JIT warms up). */
  warmup: number;
  /** Measured windows per responder. */
  windows: number;
  /** Seconds of the idle daemon measured. */
  idleSeconds: number;
  /** Iterations of the calibration loop (each measured 3 times, and twice as many). */
  calibrate: number;
  /** node's flags for the daemon (licd.service's ExecStart). */
  nodeFlags: string[];
  /** The payload's root in the guest (dist/, license/, mosquitto/, bench/). */
  root: string;
  /** Where the daemon's data and the brokers' files go (the image's root file system). */
  work: string;
  port: number;
  username: string;
  password: string;
  /** mosquitto's config lines besides listener, users and ACL (the shipped tuning). */
  mosquittoTuning: string[];
  feature: string;
}

/** CPU of one process over a window: ns of schedstat summed over threads (= instructions under icount), and /proc/PID/stat ticks. */
export interface Counts {
  ns: number;
  userTicks: number;
  systemTicks: number;
  threads: number;
}

export interface Window {
  ops: number;
  /** Guest clock ns over the window (instructions of everything, idle included). */
  wallNs: number;
  errors: number;
  procs: Record<string, Counts>;
}

export interface GuestResult {
  arch: string;
  kernel: string;
  node: string;
  mosquitto: string;
  cpus: number;
  calibration: { iterations: number; ns: number }[];
  licd: Window[];
  echo: Window[];
  idle: { seconds: number; wallNs: number; procs: Record<string, Counts> };
  answerBytes: Record<string, number>;
}
