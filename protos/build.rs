fn main() {
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/runtimeoptions.proto")
        .input("proto/runc_options.proto")
        .input("proto/runc_v1_options.proto")
        .cargo_out_dir("protos")
        .run_from_script();
}
