import { URLExt } from '@jupyterlab/coreutils';

import { ServerConnection } from '@jupyterlab/services';

/**
 * The REST namespace of the jupyter-server extension `server_ext`
 * (see `server_ext/api/openapi.yaml`).
 */
export const API_NAMESPACE = 'dsdata/api';

/**
 * Query parameters; `undefined` and `null` values are left out.
 */
export type Query = Record<
  string,
  string | number | boolean | undefined | null
>;

/**
 * The URL of an endpoint of the server extension.
 *
 * @param baseUrl The server's base URL (`ServerConnection.ISettings.baseUrl`)
 * @param endPoint Path below `/dsdata/api/`, e.g. `pulls/ID`; each segment is
 *   taken as given, so callers encode names with `encodeURIComponent`
 * @param query Optional query parameters
 */
export function apiURL(
  baseUrl: string,
  endPoint: string,
  query: Query = {}
): string {
  const url = URLExt.join(baseUrl, API_NAMESPACE, endPoint);
  const params = Object.entries(query)
    .filter(([, value]) => value !== undefined && value !== null)
    .map(
      ([key, value]) =>
        `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`
    );
  return params.length ? `${url}?${params.join('&')}` : url;
}

/**
 * Parse a response body: JSON when it is JSON, else the text itself
 * (an empty body gives `null`).
 */
export function parseBody(text: string): unknown {
  if (text.length === 0) {
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * The message to show for a failed response: the server's JSON `{"message"}`,
 * else a short text body, else the status line.
 */
export function errorMessage(
  status: number,
  statusText: string,
  body: unknown
): string {
  if (body && typeof body === 'object' && 'message' in body) {
    const message = (body as { message: unknown }).message;
    if (typeof message === 'string' && message.trim()) {
      return message;
    }
  }
  if (typeof body === 'string' && body.trim() && body.length <= 500) {
    return body.trim();
  }
  return `Request failed: ${status} ${statusText}`.trim();
}

/**
 * Call the server extension.
 *
 * @param endPoint API REST end point below `/dsdata/api/`
 * @param init Initial values for the request (method, body, ...)
 * @param settings The server settings to use for the request
 * @param query Optional query parameters
 * @returns The response body interpreted as JSON
 * @throws ServerConnection.ResponseError with the server's message when the
 *   status is not 2xx; ServerConnection.NetworkError when the server cannot
 *   be reached
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
  query: Query = {}
): Promise<T> {
  const url = apiURL(settings.baseUrl, endPoint, query);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    if (error instanceof ServerConnection.NetworkError) {
      throw error;
    }
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const body = parseBody(await response.text());
  if (!response.ok) {
    throw new ServerConnection.ResponseError(
      response,
      errorMessage(response.status, response.statusText, body)
    );
  }
  return body as T;
}

/**
 * The message of anything thrown by a request, for a notification.
 */
export function messageOf(error: unknown): string {
  if (error instanceof Error && error.message) {
    return error.message;
  }
  return String(error);
}
