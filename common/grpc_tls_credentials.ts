/**
 * TLS channel credentials for grpc-js that verify a server reached by IP address without sending the IP as
 * SNI. grpc-js (1.14) always sets the TLS `servername` to the target host or `grpc.ssl_target_name_override`;
 * RFC 6066 allows only DNS names there, and Node 26 refuses an IP (ERR_INVALID_ARG_VALUE). Workers are
 * reached by IP — in a cluster they advertise $POD_IP — and their certificates carry that IP as a SAN, so this
 * connector sends SNI only for DNS names and checks the certificate with tls.checkServerIdentity, which
 * matches an IP against the certificate's IP SANs and a name against its DNS SANs.
 */
import { isIP } from "node:net";
import { type ConnectionOptions, checkServerIdentity, connect, type SecureContext } from "node:tls";
import { CallCredentials, ChannelCredentials, type ChannelOptions, experimental } from "@grpc/grpc-js";

/** grpc-js's target syntax (its own uri-parser): `scheme:path` or `scheme://authority/path`. */
const TARGET_URI = /^(?:([A-Za-z0-9+.-]+):)?(?:\/\/([^/]*)\/)?(.+)$/;

/** The host the channel means: behind an HTTP proxy grpc-js dials the proxy and names the real target here. */
function targetHost(channelTarget: experimental.GrpcUri, options: ChannelOptions): string {
  let target = channelTarget;
  const proxied = options["grpc.http_connect_target"];
  const m = typeof proxied === "string" ? TARGET_URI.exec(proxied) : null;
  if (m) target = { scheme: m[1], authority: m[2], path: m[3] };
  if (target.scheme === "unix") return "localhost";
  // The ipv4:/ipv6: schemes list several addresses; grpc-js takes the first as the authority too.
  const path = target.scheme === "ipv4" || target.scheme === "ipv6" ? target.path.split(",")[0] : target.path;
  return experimental.splitHostPort(path)?.host ?? path;
}

export class TlsChannelCredentials extends ChannelCredentials {
  constructor(
    private readonly context: SecureContext,
    /** Name or IP to verify the certificate against instead of the target's host. */
    private readonly serverName?: string,
  ) {
    super();
  }

  override _isSecure(): boolean {
    return true;
  }

  /** Channels share subchannels only when their credentials are equal: each client keeps its own. */
  override _equals(other: ChannelCredentials): boolean {
    return other === this;
  }

  override _createSecureConnector(
    channelTarget: experimental.GrpcUri,
    options: ChannelOptions,
    callCredentials?: CallCredentials,
  ): experimental.SecureConnector {
    const host = targetHost(channelTarget, options);
    const override = options["grpc.ssl_target_name_override"];
    const name = this.serverName ?? (typeof override === "string" && override !== "" ? override : host);
    const tlsOptions: ConnectionOptions = {
      secureContext: this.context,
      host,
      ALPNProtocols: ["h2"],
      ...(isIP(name) === 0 ? { servername: name } : {}),
      checkServerIdentity: (_host, cert) => checkServerIdentity(name, cert),
    };
    const perCall = callCredentials ?? CallCredentials.createEmpty();
    return {
      connect: (socket) =>
        new Promise((resolve, reject) => {
          const tlsSocket = connect({ ...tlsOptions, socket }, () => {
            if (tlsSocket.authorized) resolve({ socket: tlsSocket, secure: true });
            else reject(tlsSocket.authorizationError);
          });
          tlsSocket.on("error", reject);
        }),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => perCall,
      destroy: () => {},
    };
  }
}
