/* embedded_model.S - links the default model file (VB_EMBED_PATH) into the library as
 * read-only data; vb_embedded_model() in model.c returns it. */
    .section .rodata
    .balign 64
    .globl vb_embedded_model_data
    .hidden vb_embedded_model_data
vb_embedded_model_data:
    .incbin VB_EMBED_PATH
    .globl vb_embedded_model_end
    .hidden vb_embedded_model_end
vb_embedded_model_end:
    .byte 0
    .section .note.GNU-stack,"",@progbits
