// presence-client.d.ts (served beside presence-client.js) says what the document says:
// each of its status shapes is the type openapi-typescript generates. tsc fails here if
// either drifts.
import type * as presence from "../../../crates/api/static/presence-client.js";
import type { components } from "../generated/api.js";

type Schemas = components["schemas"];
/** Each assignable to the other. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export const agree: [
  Same<presence.PublicStatus, Schemas["PublicStatus"]>,
  Same<presence.OwnStatus, Schemas["OwnStatus"]>,
  Same<presence.StatusUpdate, Schemas["StatusUpdate"]>,
  Same<presence.Presence, Schemas["Presence"]>,
  Same<presence.Availability, Schemas["Availability"]>,
  Same<presence.OnlineStatus, Schemas["OnlineStatus"]>,
  Same<presence.ErrorCode, Schemas["ErrorCode"]>,
  Same<presence.PresenceError["code"], Schemas["ErrorCode"] | null>,
] = [true, true, true, true, true, true, true, true];
