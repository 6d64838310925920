#!/usr/bin/env python3
"""Hand-written seeds for fuzz_lora_adapters, fuzz_quantized and fuzz_llava_config
(run from the repository root; writes the named seeds, leaves grown_* inputs alone)."""
import json, struct, random, os
random.seed(1)
root='.'
def st(tensors):
    # tensors: list of (name, dtype, shape, bytes)
    hdr={}; off=0; data=b''
    for n,dt,sh,b in tensors:
        hdr[n]={'dtype':dt,'shape':sh,'data_offsets':[off,off+len(b)]}; off+=len(b); data+=b
    hdr['__metadata__']={'format':'pt'}
    h=json.dumps(hdr,separators=(',',':')).encode()
    h+=b' '*((8-len(h)%8)%8)
    return struct.pack('<Q',len(h))+h+data
def f32(n): return struct.pack('<%df'%n,*[random.uniform(-.1,.1) for _ in range(n)])
def f16(n): return struct.pack('<%de'%n,*[random.uniform(-.1,.1) for _ in range(n)])
def bf16(n): return b''.join(struct.pack('<f',random.uniform(-.1,.1))[2:] for _ in range(n))
H,I,L,qd,kvd=64,128,3,64,32
dims={'q_proj':('self_attn',H,qd),'k_proj':('self_attn',H,kvd),'v_proj':('self_attn',H,kvd),'o_proj':('self_attn',qd,H),
      'gate_proj':('mlp',H,I),'up_proj':('mlp',H,I),'down_proj':('mlp',I,H)}
def adapters(r, mods, layers, dt='F32'):
    fn={'F32':f32,'F16':f16,'BF16':bf16}[dt]
    t=[]
    for l in layers:
        for m in mods:
            p,i,o=dims[m]
            k='base_model.model.model.layers.%d.%s.%s'%(l,p,m)
            t.append((k+'.lora_A.weight',dt,[r,i],fn(r*i)))
            t.append((k+'.lora_B.weight',dt,[o,r],fn(o*r)))
    return t
def cfg(r,alpha,mods,layers=None,**kw):
    c={'peft_type':'LORA','r':r,'lora_alpha':alpha,'target_modules':mods,'lora_dropout':0.0,
       'layers_to_transform':layers,'use_dora':False,'use_rslora':False,'bias':'none'}
    c.update(kw); return json.dumps(c).encode()
SEP=b'\n#adapter_model.safetensors\n'
d=root+'/fuzz/corpus/fuzz_lora_adapters/'
def w(name,b): open(d+name,'wb').write(b)
w('qv_r2_all.bin', cfg(2,4,['q_proj','v_proj'])+SEP+st(adapters(2,['q_proj','v_proj'],range(3))))
w('all7_r1_last1_f16.bin', cfg(1,2,list(dims),[2])+SEP+st(adapters(1,list(dims),[2],'F16')))
w('ko_r2_last2_bf16_string.bin', cfg(2,8,'k_proj,o_proj',[1,2])+SEP+st(adapters(2,['k_proj','o_proj'],[1,2],'BF16')))
w('rslora_gate_up.bin', cfg(2,4,['gate_proj','up_proj'],use_rslora=True)+SEP+st(adapters(2,['gate_proj','up_proj'],range(3))))
w('config_only.json', cfg(4,8,['q_proj','v_proj']))
bad=adapters(2,['q_proj','v_proj'],range(3)); bad[3]=(bad[3][0],'F32',[kvd,3],f32(kvd*3))
w('wrong_shape.bin', cfg(2,4,['q_proj','v_proj'])+SEP+st(bad))
w('missing_tensor.bin', cfg(2,4,['q_proj','v_proj'])+SEP+st(adapters(2,['q_proj','v_proj'],range(3))[:-2]))
w('extra_tensor.bin', cfg(2,4,['q_proj'])+SEP+st(adapters(2,['q_proj','v_proj'],range(3))))
w('layers_int_dora.bin', cfg(2,4,['q_proj'],2,use_dora=True)+SEP+st(adapters(2,['q_proj'],[2])))
w('layers_int.bin', cfg(2,4,['q_proj'],2)+SEP+st(adapters(2,['q_proj'],[2])))
w('unknown_module.json', cfg(2,4,['q_proj','lm_head']))
# quantized
d=root+'/fuzz/corpus/fuzz_quantized/'
for m in ['llama-q4g64','llama-q4mixed','llama-q8g32','qwen3-q4g64','qwen3-q8g32']:
    w('config_'+m+'.json', open(root+'/tests/golden/quant/%s/config.json'%m,'rb').read())
def rb(n): return bytes(random.randrange(256) for _ in range(n))
hdrs={'q4g64_fixed':[0x10|0x01|0x04,3,1,0,0,0,0],'q2g32_auto':[0x00,2,0,0x05,0,0,0],'q8g128_bf16_out':[0x10|0x40|0x02|0x08,1,0,0x0a,0,0,0],
      'q4g32_auto_f16':[0x01,4,3,0x05,0,0,0],'bad_bits_raw':[0x13,1,0,0,0,0x36,0],'bad_cols':[0x11,1,0x81,0,0,0,0],
      'packed_i32':[0x31,1,0,0,0,0,1],'shape_mismatch':[0x11,1,0,0x30,0x44,0,0],'no_biases':[0x91,1,0,0,0,0,0],
      'expected_shape_off':[0x11,1,0,0,0x60,0,0]}
for k,h in hdrs.items(): w('m_'+k+'.bin', bytes(h)+rb(256))
# llava
d=root+'/fuzz/corpus/fuzz_llava_config/'
base=json.load(open(root+'/tests/golden/vlm/llava-fp32/config.json'))
proc=json.load(open(root+'/tests/golden/vlm/llava-fp32/processor_config.json'))
PS=b'\n#processor_config.json\n'; PP=b'\n#preprocessor_config.json\n'
def J(o): return json.dumps(o,indent=1).encode()
def var(**kw):
    c=json.loads(json.dumps(base)); 
    for k,v in kw.items():
        if v is None: c.pop(k,None)
        else: c[k]=v
    return c
w('golden.json', J(base))
w('bf16_config.json', open(root+'/tests/golden/vlm/llava-bf16/config.json','rb').read())
w('layer_m1_full.json', J(var(vision_feature_layer=-1, vision_feature_select_strategy='full')))
w('layer_list.json', J(var(vision_feature_layer=[-2,-1])))
w('no_image_token_index.json', J(var(image_token_index=None, image_token_id=3)))
c=var(); c['vision_config']['image_size']=48; w('image_size_48.json', J(c))
c=var(); c['text_config']['model_type']='mistral'; w('text_mistral.json', J(c))
p2=json.loads(json.dumps(proc)); p2['patch_size']=16; p2['num_additional_image_tokens']=0
w('proc_patch16.bin', J(base)+PS+J(p2))
pre=dict(proc['image_processor']); pre['processor_class']='LlavaProcessor'
w('with_preprocessor.bin', J(base)+PS+J({'processor_class':'LlavaProcessor','image_token':'<image>','patch_size':8})+PP+J(pre))
w('preprocessor_only_class.bin', J(base)+PP+J(pre))
p3=json.loads(json.dumps(proc)); p3['image_token']='<img>'
w('proc_other_token.bin', J(base)+PS+J(p3))
