// A typed client of the presence API, written as a frontend team writes one: types from
// openapi-typescript, calls through openapi-fetch, and nothing the document does not say
// (no `!`, no `?? null`, no casts; `just contract` checks).
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "../generated/api.js";

export type Schemas = components["schemas"];
export type PublicStatus = Schemas["PublicStatus"];
export type OwnStatus = Schemas["OwnStatus"];
export type Me = Schemas["Me"];
export type ListedUser = Schemas["ListedUser"];
export type ErrorBody = Schemas["ErrorBody"];
export type Api = Client<paths>;

export function api(baseUrl: string, token?: string): Api {
  return createClient<paths>({
    baseUrl,
    headers: token === undefined ? {} : { Authorization: `Bearer ${token}` },
  });
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(`${status} ${body.error.code}: ${body.error.message}`);
  }
}

/** Registers and logs in: the new session's token and the user as they see themselves. */
export async function signUp(client: Api, username: string, password: string): Promise<{ token: string; me: Me }> {
  const registered = await client.POST("/api/users/register/", { body: { username, password } });
  if (registered.error) throw new ApiError(registered.response.status, registered.error);
  const login = await client.POST("/api/users/login/", { body: { username, password } });
  if (login.error) throw new ApiError(login.response.status, login.error);
  return { token: login.data.token, me: login.data.user };
}

type UserList = Schemas["UserList"];

async function usersPage(client: Api, limit: number, cursor: string | null): Promise<UserList> {
  const query: paths["/api/users/all-users/"]["get"]["parameters"]["query"] =
    cursor === null ? { limit } : { limit, cursor };
  const { data, error, response } = await client.GET("/api/users/all-users/", { params: { query } });
  if (error) throw new ApiError(response.status, error);
  return data;
}

/** Every user, page by page: each page's `next` goes back as the next `cursor`. */
export async function allUsers(client: Api, limit: number): Promise<ListedUser[]> {
  const users: ListedUser[] = [];
  let page = await usersPage(client, limit, null);
  users.push(...page.users);
  while (page.next !== null) {
    page = await usersPage(client, limit, page.next);
    users.push(...page.users);
  }
  return users;
}

/** The admins' changes poll: the users changed since the last poll, and the next `since`. */
export async function changesSince(client: Api, since: string): Promise<{ changed: ListedUser[]; next: string }> {
  const { data, error, response } = await client.GET("/api/users/all-users/", {
    params: { query: { changed_since: since } },
  });
  if (error) throw new ApiError(response.status, error);
  return { changed: data.users, next: data.as_of };
}

/** How a status is rendered in a contact list: every field is there, `null` when empty. */
export function label(status: PublicStatus): string {
  const custom = [status.status_emoji, status.status_text].filter((part) => part !== null).join(" ");
  const until = status.dnd_until === null ? "" : ` until ${new Date(status.dnd_until).toISOString()}`;
  return `${status.presence}${until}${custom === "" ? "" : ` (${custom})`}`;
}

/** What a 401 tells a client to do next. */
export function afterRefusal(body: ErrorBody): "new ticket" | "log in" | "retry" {
  switch (body.error.code) {
    case "ticket_used":
    case "ticket_expired":
      return "new ticket";
    case "unauthenticated":
    case "invalid_credentials":
      return "log in";
    default:
      return "retry";
  }
}
