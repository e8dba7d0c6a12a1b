//! The local receiver's OTLP/gRPC side: the three export services,
//! taking the message bytes as received.

use super::*;

/// One OTLP export service over gRPC (`/<service>/Export`), taking the
/// request message as received ([`RawCodec`]: protobuf bytes) so that it is
/// forwarded like an OTLP/HTTP protobuf body.
pub(super) struct GrpcExport<R> {
    forwarder: Arc<Forwarder>,
    max: usize,
    request: PhantomData<fn() -> R>,
}

impl<R> GrpcExport<R> {
    pub(super) fn new(forwarder: Arc<Forwarder>, max: usize) -> Self {
        GrpcExport {
            forwarder,
            max,
            request: PhantomData,
        }
    }
}

impl<R> Clone for GrpcExport<R> {
    fn clone(&self) -> Self {
        GrpcExport::new(self.forwarder.clone(), self.max)
    }
}

impl<R: ExportRequest> tonic::server::NamedService for GrpcExport<R> {
    const NAME: &'static str = R::GRPC_SERVICE;
}

impl<R, B> Service<http::Request<B>> for GrpcExport<R>
where
    R: ExportRequest,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let export = Export::<R>(self.forwarder.clone(), PhantomData);
        let max = self.max;
        Box::pin(async move {
            if req.uri().path().rsplit('/').next() != Some("Export") {
                return Ok(tonic::Status::unimplemented("only Export exists").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_decoding_message_size(max);
            Ok(grpc.unary(export, req).await)
        })
    }
}

/// The `Export` call of one signal.
pub(super) struct Export<R>(pub(super) Arc<Forwarder>, pub(super) PhantomData<fn() -> R>);

impl<R: ExportRequest> tonic::server::UnaryService<Bytes> for Export<R> {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        std::future::ready(match self.0.forward_protobuf::<R>(req.into_inner()) {
            Ok(accepted) => Ok(tonic::Response::new(Bytes::from(
                R::response(&accepted).encode_to_vec(),
            ))),
            Err(e) => {
                self.0.count_bad_request();
                Err(tonic::Status::invalid_argument(format!(
                    "undecodable OTLP request: {e}"
                )))
            }
        })
    }
}
