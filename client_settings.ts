/**
 * The client's command line and configuration: `./run_client [MAIN_PROXY]
 * [options] [--Name=value ...]`, read into {@linkcode ClientSettings}. An
 * option's error names the option as it was typed, a property's the property.
 *
 * @module
 */
import type { Ice } from "ice";
import { PLAYER_CHOICES, type PlayerChoice } from "./player.ts";
import { loadProperties } from "./service.ts";

/** Main's proxy when neither the command line nor `IceFlix.Client.MainProxy` names one (spec: port 10010). */
export const DEFAULT_MAIN_PROXY = "Main:tcp -h 127.0.0.1 -p 10010";

/** How the client is set up. */
export interface ClientSettings {
  /** The Main given at start, which plain `connect` goes back to. */
  mainProxy: string;
  /** Attempts in all while Main is unreachable or answers TemporaryUnavailable (spec 3.1: 3). */
  attempts: number;
  /** Seconds between attempts (spec 3.1: 10). */
  retryPause: number;
  player: PlayerChoice;
  /** Commands come from this file (script mode) rather than from stdin. */
  scriptFile: string | undefined;
}

/** A command line the client cannot run with; the message says why. */
export class SettingsError extends Error {}

/** The options that stand for a property. */
const OPTIONS: Record<string, string> = {
  "--attempts": "IceFlix.Client.Attempts",
  "--retry-pause": "IceFlix.Client.RetryPause",
  "--player": "IceFlix.Client.Player",
};

/** How to call the client, for errors and `--help`. */
export const USAGE = `usage: run_client [MAIN_PROXY] [--attempts N] [--retry-pause SECONDS] [--player ${
  PLAYER_CHOICES.join("|")
}]
                  [--script FILE] [--Name=value ...]`;

/**
 * Reads the command line (after `--Ice.Config=...`, which run_client adds)
 * and the configuration.
 *
 * @throws SettingsError for an unknown argument or a bad value
 */
export function readSettings(args: readonly string[]): { properties: Ice.Properties; settings: ClientSettings } {
  const iceArgs: string[] = [];
  /** Which name the user typed for each property, for the messages. */
  const typed = new Map<string, string>();
  let mainProxy: string | undefined;
  let scriptFile: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const [name, inline] = args[i].split(/=(.*)/s, 2);
    if (name in OPTIONS || name === "--script") {
      const value = inline ?? args[++i];
      if (value === undefined) throw new SettingsError(`${name} needs a value\n${USAGE}`);
      if (name === "--script") {
        scriptFile = value;
      } else {
        iceArgs.push(`--${OPTIONS[name]}=${value}`);
        typed.set(OPTIONS[name], name);
      }
    } else if (!args[i].startsWith("-") && mainProxy === undefined) {
      mainProxy = args[i];
    } else if (args[i].startsWith("--") && args[i].includes("=")) {
      iceArgs.push(args[i]);
      typed.delete(name.slice(2));
    } else {
      throw new SettingsError(`unknown argument "${args[i]}"\n${USAGE}`);
    }
  }
  let properties: Ice.Properties;
  try {
    properties = loadProperties(iceArgs);
  } catch (error) {
    throw new SettingsError((error as Error).message);
  }
  const nameOf = (property: string) => typed.get(property) ?? property;
  const number = (property: string, fallback: number, valid: (value: number) => boolean, rule: string) => {
    const text = properties.getProperty(property).trim();
    if (text === "") return fallback;
    const value = Number(text);
    if (!valid(value)) throw new SettingsError(`${nameOf(property)} must be ${rule}, not "${text}"`);
    return value;
  };
  const attempts = number(
    "IceFlix.Client.Attempts",
    3,
    (n) => Number.isInteger(n) && n >= 1,
    "a whole number, 1 or more",
  );
  const retryPause = number("IceFlix.Client.RetryPause", 10, (n) => Number.isFinite(n) && n >= 0, "0 or more seconds");
  const player = properties.getPropertyWithDefault("IceFlix.Client.Player", "gst") as PlayerChoice;
  if (!PLAYER_CHOICES.includes(player)) {
    throw new SettingsError(`${nameOf("IceFlix.Client.Player")} must be one of ${PLAYER_CHOICES.join(", ")}`);
  }
  // IceStorm calls us back (revocations, stream sync) at this adapter; loopback unless configured.
  if (properties.getProperty("ClientAdapter.Endpoints") === "") {
    properties.setProperty("ClientAdapter.Endpoints", "tcp -h 127.0.0.1");
  }
  if (properties.getProperty("IceFlix.LogLevel") === "") properties.setProperty("IceFlix.LogLevel", "warn");
  return {
    properties,
    settings: {
      mainProxy: mainProxy ?? properties.getPropertyWithDefault("IceFlix.Client.MainProxy", DEFAULT_MAIN_PROXY),
      attempts,
      retryPause,
      player,
      scriptFile,
    },
  };
}
